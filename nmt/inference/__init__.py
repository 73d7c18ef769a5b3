"""Inference: from a trained model on disk to translations, scores and metrics.

- :mod:`~nmt.inference.load`: a run, checkpoint, ensemble or export -> a :class:`Translator`;
- :mod:`~nmt.inference.translator`: lines -> hypotheses, length-sorted batches, order kept;
- :mod:`~nmt.inference.search`: greedy, beam search and sampling over the backbone contract;
- :mod:`~nmt.inference.guide`, :mod:`~nmt.inference.glossary`,
  :mod:`~nmt.inference.constraints`: target prefixes, glossaries and lexically
  constrained beam search (dynamic beam allocation);
- :mod:`~nmt.inference.alignment`: word alignments from attention;
- :mod:`~nmt.inference.guided`: glossary, prefix, score and alignment columns of files;
- :mod:`~nmt.inference.documents` (with :mod:`~nmt.inference.markup`,
  :mod:`~nmt.inference.tag_placement`, :mod:`~nmt.inference.segment`): inline markup kept,
  lines too long for the model split into sentences;
- :mod:`~nmt.inference.resume`: huge files that survive interruption (``--resume``);
- :mod:`~nmt.inference.ensemble`, :mod:`~nmt.inference.ct2`, :mod:`~nmt.inference.quantize`:
  other ways to run the same search;
- :mod:`~nmt.inference.files`: whole files and standard input;
- :mod:`~nmt.inference.scoring` (forced decoding) and :mod:`~nmt.inference.metrics` (sacreBLEU).

Nothing here imports :mod:`nmt.training` or :mod:`nmt.cli`.
"""
