"""Pairwise scoring (``POST /score`` and ``shoprec score``): one matrix for the whole batch,
answered as the JSON of a :class:`~shoprec.serving.schemas.ScoreResponse` and logged as one JSON
line per request in ``<workspace>/logs/score.jsonl``."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shoprec.serving.engine import Engine, LiveItemVectors, PairScores
from shoprec.serving.lists import to_json
from shoprec.serving.schemas import ScoreRequest

__all__ = ["MAX_LOGGED_SCORES", "decode_logged_scores", "score_batch"]

score_log = logging.getLogger("shoprec.score")
# the most scores a request's log line carries (100 × 100 pairs: about 53 kB of base64)
MAX_LOGGED_SCORES = 10_000


def score_batch(
    engine: Engine, request: ScoreRequest, *, live: LiveItemVectors | None = None
) -> bytes:
    """``POST /score`` (and ``shoprec score``): one matrix for the whole batch, answered as
    the JSON of a :class:`ScoreResponse`; every request and its results logged as one JSON
    line with a request id. ``live`` finds embeddings of items that arrived after the run was
    built (the live state's)."""
    left_type, right_type = request.type.split("-", 1)
    left = [str(i) for i in request.item]
    right = [str(i) for i in request.items2]
    started = time.perf_counter()
    pairs = engine.pair_scores(request.algo, left_type, right_type, left, right, live)
    created = datetime.now(UTC).isoformat()
    matched = [request.items2[i] for i in pairs.right]
    unmatched = [
        {"entity": request.items2[i], "status": status} for i, status in pairs.right_status.items()
    ]
    request_id = uuid.uuid4().hex
    body = _score_json(
        request, pairs, left_type, right_type, matched, unmatched, created, request_id
    )
    if score_log.isEnabledFor(logging.INFO):
        # The whole result, compactly: the score matrix (scored rows × matched entities) as
        # base64 of little-endian float32, row-major (see decode_logged_scores); a matrix of
        # more than MAX_LOGGED_SCORES is left out, so no request writes more than ~100 kB.
        matrix = np.ascontiguousarray(pairs.scores, dtype="<f4")
        logged = matrix if matrix.size <= MAX_LOGGED_SCORES else matrix[:0]
        record = {
            "event": "score",
            "request_id": request_id,
            "at": created,
            "run_id": engine.run_id,
            "type": request.type,
            "algo": request.algo,
            "items": request.item,
            "items2": request.items2,
            "ms": round((time.perf_counter() - started) * 1000, 3),
            "scored": [request.item[i] for i in pairs.left],
            "matched": matched,
            "shape": list(matrix.shape),
            "scores_f32": base64.b64encode(logged.tobytes()).decode("ascii"),
            "scores_logged": logged.size == matrix.size,
            "not_scored": [
                {"entity": request.item[i], "status": status}
                for i, status in pairs.left_status.items()
            ],
            "unmatched": unmatched,
        }
        score_log.info(to_json(record).decode())
    return body


def _score_json(
    request: ScoreRequest,
    pairs: PairScores,
    left_type: str,
    right_type: str,
    matched: list[int | str],
    unmatched: list[dict[str, Any]],
    created: str,
    request_id: str,
) -> bytes:
    """The JSON of the :class:`ScoreResponse` (the route's documented model; a test holds the
    two to the same shape), written from the checked values. Every scored row lists the same
    matched entities, so their JSON is written once and repeated; scores are rounded to six
    decimals as float64, so they print short."""
    rows = dict(zip(pairs.left, np.round(pairs.scores.astype(np.float64), 6).tolist(), strict=True))
    scored_tail = b"".join(
        [
            b',"match_entity_type":',
            to_json(right_type),
            b',"matched_entities":',
            to_json(matched),
            b',"created_at":',
            to_json(created),
            b"}",
        ]
    )
    missing_tail = b"".join(
        [
            b',"match_entity_type":',
            to_json(right_type),
            b',"matched_entities":[],"created_at":',
            to_json(created),
            b"}",
        ]
    )
    left_json = to_json(left_type)
    results: list[bytes] = []
    for position, entity in enumerate(request.item):
        row = rows.get(position)
        status = "ok" if row is not None else pairs.left_status[position]
        results.append(
            b"".join(
                [
                    b'{"entity":',
                    to_json(entity),
                    b',"entity_type":',
                    left_json,
                    b',"status":',
                    to_json(status),
                    b',"scores":',
                    to_json(row if row is not None else []),
                    scored_tail if row is not None else missing_tail,
                ]
            )
        )
    head = {
        "status": "success" if not unmatched and not pairs.left_status else "partial",
        "type": request.type,
        "algo": request.algo,
        "request_id": request_id,
    }
    return b"".join(
        [
            to_json(head)[:-1],  # the head's fields, then the results and the unmatched ones
            b',"results":[',
            b",".join(results),
            b'],"unmatched":',
            to_json(unmatched),
            b"}",
        ]
    )


def decode_logged_scores(line: dict[str, Any]) -> np.ndarray:
    """The score matrix of one ``score.jsonl`` line (rows: ``scored``, columns: ``matched``)."""
    if not line.get("scores_logged", True):
        raise ValueError(
            f"request {line.get('request_id')}: its {line['shape']} matrix was too large to log"
        )
    raw = base64.b64decode(line["scores_f32"])
    return np.frombuffer(raw, dtype="<f4").reshape(line["shape"])
