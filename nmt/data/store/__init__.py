"""The binary data store: corpora tokenized once into memory-mapped id arrays.

Training on a large corpus must not read and encode every sentence into Python lists
at every start, in every process. A store holds one split of one corpus, encoded with
one tokenizer, as flat arrays on disk; training maps them read-only, so start-up costs
a checksum pass instead of a tokenization, and all processes of a machine share one
copy through the page cache.

Modules, in the order data flows through them:

- :mod:`~nmt.data.store.encode`: one chunk of text pairs to id arrays, length filter;
- :mod:`~nmt.data.store.build`: streaming, parallel build, atomic write;
- :mod:`~nmt.data.store.manifest`: what a store was made from, integrity checks;
- :mod:`~nmt.data.store.ensure`: where a store lives; rebuild when missing or stale;
- :mod:`~nmt.data.store.corpus`: :class:`StoreCorpus`, rows and batches as tensors;
- :mod:`~nmt.data.store.fileread`: rows and plans read with ``pread``, not mapped;
- :mod:`~nmt.data.store.batches`: an epoch's batches planned from the length arrays;
- :mod:`~nmt.data.store.plan`: that plan as files, written once, read by every process;
- :mod:`~nmt.data.store.training_data`: what training calls (:func:`load_training_data`);
- :mod:`~nmt.data.store.stats`: ``nmt data prepare`` and ``nmt data stats``.

Nothing is imported here, so that the build's worker processes import only what they use.
"""
