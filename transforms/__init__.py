"""Beam PTransforms and DoFns of rex: change sources and decoding, ledger mirror, cession,
bordereaux, warehouse and export sinks."""
