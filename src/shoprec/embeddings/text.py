"""What an entity's content is: the one text a provider embeds and the cache hashes.

The text is the title, the free text and the category, in that order, joined by spaces (missing
parts left out). Attributes are not part of it: they change often (stock, price, ratings) and
each change would send the entity to a provider again, at a cost; they have their own vectors
(:mod:`shoprec.embeddings.attributes`), combined with the text vector by weights.
"""

from __future__ import annotations

import polars as pl

from shoprec.data.schema import CATEGORY, TEXT, TITLE

__all__ = ["TEXT_COLUMNS", "entity_texts"]

TEXT_COLUMNS = (TITLE, TEXT, CATEGORY)


def entity_texts(items: pl.DataFrame) -> list[str]:
    """One text per row of an items frame (an empty string where it has no text at all)."""
    parts = [column for column in TEXT_COLUMNS if column in items.columns]
    if not parts:
        return [""] * items.height
    joined = items.select(
        pl.concat_str(
            [pl.col(c).cast(pl.String) for c in parts], separator=" ", ignore_nulls=True
        ).fill_null("")
    ).to_series()
    return joined.to_list()
