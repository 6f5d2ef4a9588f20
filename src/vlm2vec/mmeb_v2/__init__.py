"""MMEB-V2 (78 tasks): the task table, frame selection, ranking metrics, aggregates and data readers.

These modules know the benchmark's facts and its published data layouts but nothing of models,
configuration or encoding, so they can be read, tested and reused (by the evaluator, the training data
path and the data-locating command) without importing torch. They import only `vlm2vec.errors`,
`vlm2vec.atomic_files`, the standard library, numpy, PIL and pyarrow.
"""
