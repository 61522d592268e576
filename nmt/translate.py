"""`Translator`: text in, text out. Cleans and encodes lines, sorts them into token-budgeted
batches, searches, restores the input order and decodes. Exactly one result per input line.

The text side (`LineTranslator`) is shared by every engine; an engine only supplies `search_ids`.
`Translator` is the PyTorch engine, in float32, bf16 (autocast) or int8 (dynamic quantisation of
the Linear layers); nmt/ct2.py holds the CTranslate2 engine."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from nmt.config import DecodeConfig, SamplingConfig
from nmt.data import ParallelIds, collate, token_batches
from nmt.errors import ConfigError
from nmt.hypotheses import Hypothesis, max_source_tokens
from nmt.line_translator import PRECISIONS, LineTranslator
from nmt.model import Transformer
from nmt.modeldir import LoadedModel, load_model_dir
from nmt.processors import processors
from nmt.runtime import autocast, pick_device, set_threads
from nmt.search import StepModel, beam_search, greedy, sample

if TYPE_CHECKING:
    from nmt.attention import AttentionMaps


def prepare_model(model: Transformer, precision: str, device: torch.device) -> Transformer:
    """The model to search with at `precision`: itself for "fp32" and "bf16" (autocast does the
    casting, in `Translator.search_ids`), an int8 copy for "int8"."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"--bf16 runs on cpu or cuda, not {device.type}")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"--bf16: {torch.cuda.get_device_name(device)} cannot compute in bfloat16; leave --bf16 out"
            )
    if precision != "int8":
        return model
    # dynamic quantisation: int8 Linear weights (one scale per output row, which keeps small models
    # closer to float32 than one scale per matrix), activations quantised per batch as they come;
    # embeddings, LayerNorms and the attention arithmetic stay float32
    if device.type != "cpu":
        raise ConfigError(
            f"--int8 runs on the CPU only (PyTorch has no dynamic int8 kernels for {device.type}); "
            "add --device cpu, or use --bf16 on a GPU"
        )
    quantize_dynamic = getattr(torch.ao.quantization, "quantize_dynamic", None)
    per_row = getattr(torch.ao.quantization, "per_channel_dynamic_qconfig", None)
    if quantize_dynamic is None or per_row is None or torch.backends.quantized.engine == "none":
        raise ConfigError(
            f"--int8: PyTorch {torch.__version__} has no dynamic int8 quantisation for this CPU; leave --int8 out"
        )
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but still works; a user cannot act on the notice
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings(
            "ignore", message=".*quantized tensor creation functions.*deprecated", category=UserWarning
        )
        # a copy of the Transformer with its Linear layers swapped for int8 ones (found by getattr: untyped)
        return cast(Transformer, quantize_dynamic(model, {torch.nn.Linear: per_row}))


def step_model(model: Transformer, precision: str, device: torch.device) -> StepModel:
    """What search drives: the model's one decoding step (Transformer.search_stepper)."""
    return model.search_stepper(device, bf16=precision == "bf16")


class Translator(LineTranslator):
    """The PyTorch engine: a loaded model plus decoding settings: search (`config`), or sampling
    when `sampling` is given. `precision` is "fp32", "bf16" (matmuls under bf16 autocast; log-probs
    and scores stay float32) or "int8" (CPU only; see `prepare_model`). `align`: each translation's word
    alignment too."""

    can_align = True

    def __init__(
        self,
        loaded: LoadedModel,
        config: DecodeConfig,
        device: torch.device,
        sampling: SamplingConfig | None = None,
        precision: str = "fp32",
        model: Transformer | None = None,
        stepper: StepModel | None = None,
        align: bool = False,
    ):
        self.loaded, self.config, self.device, self.sampling = loaded, config, device, sampling
        self.align = self.check_align(align)
        self.precision = precision
        self.generator = None
        if sampling is not None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(sampling.seed)
        # `model`, `stepper`: the ones already prepared for `precision`, so that with_config does not quantise
        # or copy weights again
        self.model = model if model is not None else prepare_model(loaded.model, precision, device)
        self.stepper = stepper if stepper is not None else step_model(self.model, precision, device)
        self.src_tok, self.tgt_tok = loaded.src_tokenizer, loaded.tgt_tokenizer
        self.specials = loaded.specials  # the model's vocabulary's: an imported one's decoder starts from pad
        self.max_src_tokens = max_source_tokens(loaded.model.config.max_positions, config)
        lang = loaded.config.get("src_lang")  # config.json's; older ones may not record it (English rules)
        self.src_lang = lang if isinstance(lang, str) else None

    def alignment(self, src_ids: list[int], tokens: list[int]) -> str:
        """Source-target word alignment of one translation, from the model's cross-attention
        (nmt.attention.word_alignment: the penultimate decoder layer, heads averaged)."""
        from nmt.attention import pharaoh, word_alignment

        return pharaoh(word_alignment(self.attention_maps(src_ids, tokens)))

    def attention_maps(self, src_ids: list[int], tokens: list[int]) -> AttentionMaps:
        """Every attention map of the model on one source and translation (nmt.attention.attention_maps)."""
        from nmt.attention import attention_maps

        return attention_maps(
            self.model,
            src_ids,
            tokens,
            self.src_tok.to_pieces(src_ids),
            self.tgt_tok.to_pieces(tokens),
            bos_id=self.specials.bos,
            eos_id=self.specials.eos,
        )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        config: DecodeConfig = DecodeConfig(),
        device: str | None = None,
        threads: int | None = None,
        sampling: SamplingConfig | None = None,
        precision: str = "fp32",
        align: bool = False,
    ) -> Translator:
        if threads is not None:  # process-wide (torch's intra-op threads): only when asked
            set_threads(threads)
        dev = pick_device(device)
        return cls(load_model_dir(model_dir, dev), config, dev, sampling, precision, align=align)

    def with_config(self, align: bool | None = None, **changes: Any) -> Translator:
        return Translator(
            self.loaded,
            replace(self.config, **changes),
            self.device,
            self.sampling,
            self.precision,
            self.model,
            self.stepper,
            self.align if align is None else align,
        )

    @torch.inference_mode()
    def search_ids(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Search every non-empty id sequence, in length-sorted token-budgeted batches; input order kept."""
        results: list[list[Hypothesis]] = [[] for _ in ids]
        todo = [i for i, seq in enumerate(ids) if seq]
        if not todo:
            return results
        data = ParallelIds.from_lists([ids[i] for i in todo], [[] for _ in todo])
        cfg = self.config
        for index in token_batches(data.src_lens, data.tgt_lens, cfg.batch_tokens, seed=None):
            batch = collate(data, index, self.specials.pad, self.specials.bos, self.specials.eos)
            src, src_len = batch.src.to(self.device), batch.src_len.to(self.device)
            with autocast(self.device, "bf16" if self.precision == "bf16" else "fp32"):
                found = self._search(src, src_len)
            for row, hyps in zip(np.asarray(index).tolist(), found):
                results[todo[row]] = hyps
        return results

    def _search(self, src: torch.Tensor, src_len: torch.Tensor) -> list[list[Hypothesis]]:
        cfg, ids = self.config, self.specials
        shape = processors(cfg, eos_id=ids.eos, unk_id=ids.unk)
        if self.sampling is not None:
            s = self.sampling
            drawn = sample(
                self.stepper,
                src,
                src_len,
                bos_id=ids.bos,
                eos_id=ids.eos,
                pad_id=ids.pad,
                temperature=s.temperature,
                top_k=s.top_k,
                top_p=s.top_p,
                generator=self.generator,
                shape=shape,
                max_len_a=cfg.max_len_a,
                max_len_b=cfg.max_len_b,
            )
            return [[h] for h in drawn]
        if cfg.beam_size == 1 and cfg.nbest == 1:
            found = greedy(
                self.stepper,
                src,
                src_len,
                bos_id=ids.bos,
                eos_id=ids.eos,
                pad_id=ids.pad,
                length_penalty=cfg.length_penalty,
                normalize=cfg.normalize,
                shape=shape,
                max_len_a=cfg.max_len_a,
                max_len_b=cfg.max_len_b,
            )
            return [[h] for h in found]
        return beam_search(self.stepper, src, src_len, cfg, bos_id=ids.bos, eos_id=ids.eos, pad_id=ids.pad, shape=shape)
