"""The configuration schema: one dataclass per section, each key documented once, here.

One YAML file describes a whole experiment. ``model.type`` picks the backbone; every
other section (data, tokenizer, training, search) is shared by all backbones. The
comment after a field is its documentation: ``configs/reference.yaml`` is generated from
these comments (:mod:`nmt.config.reference`) and a test keeps the two identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DataConfig:
    """Where the parallel text is: ``<dir>/<split>.<lang>`` files or TSV files."""

    dir: str = "data/multi30k"  # folder with the splits (nmt data multi30k writes data/multi30k)
    src_lang: str = "de"  # source language: the file suffix, and the sentence splitter's rules
    tgt_lang: str = "en"  # target language suffix
    train: str = "train"  # training split: <dir>/<split>.<lang>[.gz], or a TSV file (see format)
    valid: str = "val"  # validation split (model selection, early stopping)
    test: str = "test_2016_flickr"  # test split (reported, never used for selection)
    max_len: int = 100  # training pairs longer than this (in subwords) are dropped
    format: str = "auto"  # plain: <split>.<lang>[.gz]; tsv: <split>[.tsv][.gz] with
    #   source<TAB>target lines; auto: tsv where the split names a .tsv(.gz) file, else plain
    store_dir: str = ""  # binary data store of the training split; "" = <dir>/nmt-store
    workers: int = 0  # processes encoding the store; 0 = one per core
    # Multilingual: one model for several directions (Johnson et al. 2017). Each direction
    # src-tgt reads <split>.<src> and <split>.<tgt> (src_lang and tgt_lang are then not
    # used); the source gets the target's tag (<2fr>), a piece of the joint tokenizer.
    directions: tuple[str, ...] = ()  # e.g. [de-en, en-de, fr-en, en-fr]; [] = bilingual
    sampling_temperature: float = 1.0  # direction d is drawn with p_d ~ n_d^(1/T) (n_d: its
    #   pairs; Arivazhagan et al. 2019): 1 = in proportion to its size, larger = more uniform


@dataclass
class TokenizerConfig:
    """SentencePiece subwords (Kudo and Richardson 2018)."""

    model: str = ""  # model file prefix; "" = <data.dir>/spm.<src>-<tgt>.<type><vocab>.<joint|sep>
    #   (multilingual: spm.<languages>.to-<targets>.<type><vocab>.joint)
    type: str = "bpe"  # bpe | unigram
    vocab_size: int = 8000  # subword vocabulary size (joint: shared by all languages)
    joint: bool = True  # one vocabulary for all languages (needed by tie_embeddings and
    #   by data.directions); multilingual: trained on each language's training text once
    character_coverage: float = 1.0  # share of the characters the vocabulary covers
    # Subword regularization (Kudo 2018; BPE-dropout, Provilkov et al. 2020): > 0 re-samples
    # the segmentation of the training pairs every epoch (validation and test never).
    sample_alpha: float = 0.0  # unigram: smoothing of the sampling; bpe: merge-dropout rate
    nbest_size: int = -1  # unigram: sample among the n best segmentations; -1 = all of them


@dataclass
class LSTMConfig:
    """Sutskever et al. (2014): the final encoder state is the decoder's only context."""

    emb_dim: int = 256  # embedding size
    hidden: int = 512  # LSTM hidden size
    layers: int = 2  # stacked LSTM layers (encoder and decoder)
    dropout: float = 0.2  # between layers and on embeddings
    reverse_source: bool = True  # Sutskever et al. 2014, sec. 3.3: reversing the source helps


@dataclass
class AttentionConfig:
    """RNN encoder-decoder with attention (Bahdanau et al. 2014; Luong et al. 2015)."""

    cell: str = "gru"  # rnn (Elman) | gru | lstm
    emb_dim: int = 256  # embedding size
    hidden: int = 512  # recurrent hidden size (per direction in the encoder)
    layers: int = 1  # stacked recurrent layers
    bidirectional: bool = True  # bidirectional encoder
    attention: str = "bahdanau"  # bahdanau (additive) | dot | general (Luong)
    input_feeding: bool = True  # Luong et al. 2015, sec. 3.3
    dropout: float = 0.3  # between layers, on embeddings and before the output layer


@dataclass
class TransformerConfig:
    """Vaswani et al. (2017)."""

    d_model: int = 256  # model width
    heads: int = 4  # attention heads (d_model must divide by heads)
    ff_dim: int = 1024  # inner size of the position-wise feed-forward layers
    encoder_layers: int = 3  # encoder layers
    decoder_layers: int = 3  # decoder layers
    dropout: float = 0.1  # residual and embedding dropout
    attention_dropout: float = 0.1  # dropout on the attention weights
    norm: str = "pre"  # pre (LayerNorm before each sublayer; stable) | post (original paper)
    tie_embeddings: bool = True  # share src emb, tgt emb and output projection (needs joint vocab)
    max_positions: int = 1024  # longest sequence the positional encodings cover


@dataclass
class ModelConfig:
    """The backbone and the shape of each; only the section of ``type`` is used."""

    type: str = "transformer"  # lstm | attention | transformer
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)


@dataclass
class TrainConfig:
    """Optimisation, budget, validation and checkpoints."""

    seed: int = 1  # random seed (weights, dropout, batch order)
    batch_tokens: int = 4096  # padded tokens per batch: sentences x the longer side's length
    max_steps: int = 0  # stop after this many updates; 0 = no limit
    max_epochs: int = 0  # stop after this many epochs; 0 = no limit
    max_minutes: float = 0.0  # stop after this much wall time; 0 = no limit
    optimizer: str = "adam"  # adam | adamw
    lr: float = 5e-4  # peak learning rate (reached at the end of warmup)
    betas: tuple[float, float] = (0.9, 0.98)  # Adam betas (Vaswani et al. 2017, sec. 5.3)
    weight_decay: float = 0.0  # decoupled with adamw, L2 with adam
    schedule: str = "noam"  # noam (warmup + inverse sqrt) | budget (linear decay to the end of
    #   the budget) | plateau | constant
    warmup_steps: int = 1000  # linear warmup updates
    plateau_factor: float = 0.5  # plateau: lr multiplier when validation BLEU stalls
    plateau_patience: int = 2  # plateau: validations without improvement before the lr drops
    min_lr: float = 1e-6  # floor of the learning rate after warmup
    label_smoothing: float = 0.1  # Szegedy et al. 2016; Vaswani et al. 2017, sec. 5.4
    clip_norm: float = 1.0  # gradient norm clipping; 0 = off
    precision: str = "bf16"  # fp32 | bf16 | fp16 (autocast; fp16 is CUDA only, with loss scaling)
    accumulate: int = 1  # batches per update and process; tokens/update = batch_tokens*this*procs
    keep_checkpoints: int = 5  # step checkpoints kept in RUN_DIR/ckpt for `nmt average`; 0 = none
    average_last: int = 0  # at the end, average the last N step checkpoints; kept if better
    threads: int = 0  # torch intra-op threads; 0 = all cores
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_bad_steps: int = 10  # stop after this many consecutive NaN/inf losses
    valid_every: int = 500  # updates between validations
    valid_bleu: bool = True  # greedy BLEU on the validation set at each validation
    valid_max_sentences: int = 0  # BLEU on the first N sentences (of each direction); 0 = all
    patience: int = 0  # early stopping: validations without BLEU gain; 0 = off
    #   (multilingual: BLEU is the mean over the directions, which also selects the best)
    log_every: int = 50  # updates between log lines
    tensorboard: str = "auto"  # TensorBoard event files in RUN_DIR/tensorboard: auto | true | false


@dataclass
class SearchConfig:
    """How ``nmt translate`` searches (each key also a command-line flag)."""

    beam: int = 5  # beam size; 1 = greedy
    nbest: int = 1  # hypotheses returned per sentence
    length_penalty: float = 1.0  # alpha of Wu et al. (2016), eq. 14; 0 = none
    max_len_a: float = 1.5  # max output length = a * source length + b
    max_len_b: int = 10  # see max_len_a
    batch_size: int = 64  # sentences per batch when translating files


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def tokenizer_prefix(self) -> str:
        """Where the SentencePiece model lives (prefix without ``.model``)."""
        if self.tokenizer.model:
            return self.tokenizer.model
        t, d = self.tokenizer, self.data
        kind = "joint" if t.joint else "sep"
        langs = f"{d.src_lang}-{d.tgt_lang}"
        if d.directions:  # the languages trained on, and the tags (target languages)
            pairs = [name.split("-") for name in d.directions]
            targets = "-".join(sorted({tgt for _, tgt in pairs}))
            langs = "-".join(sorted({lang for pair in pairs for lang in pair})) + f".to-{targets}"
        return str(Path(d.dir) / f"spm.{langs}.{t.type}{t.vocab_size}.{kind}")


CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("auto", "plain", "tsv"),
    "tokenizer.type": ("bpe", "unigram"),
    "model.type": ("lstm", "attention", "transformer"),
    "model.attention.cell": ("rnn", "gru", "lstm"),
    "model.attention.attention": ("bahdanau", "dot", "general"),
    "model.transformer.norm": ("pre", "post"),
    "train.optimizer": ("adam", "adamw"),
    "train.schedule": ("noam", "budget", "plateau", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.tensorboard": ("auto", "true", "false"),
}
