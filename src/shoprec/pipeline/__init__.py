"""The batch pipeline: build model runs and publish them in the workspace."""
