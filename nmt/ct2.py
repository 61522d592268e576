"""The CTranslate2 engine: `nmt translate --engine ctranslate2 -m DIR` on a directory written by
`nmt export`. Same text side as the PyTorch engine (`LineTranslator`: cleaning, SentencePiece,
sentences, one result per line), with CTranslate2's C++ search in place of nmt/search.py.

CTranslate2 is asked for what our own search would find, and the scores are recomputed our way:
  - the output length limit int(a * (source tokens + EOS) + b) is per sentence in our search and
    per call in CTranslate2, so sentences are translated in one call per limit;
  - CTranslate2 divides a hypothesis' log-prob by length ** alpha, we by the GNMT
    ((5 + length) / 6) ** alpha: no CTranslate2 alpha gives ours. So it returns all beam_size
    ended hypotheses with alpha = -1 (score = log-prob * length, EOS counted; any alpha but 0
    also makes it, like ours, stop a sentence only once beam_size hypotheses have ended), the
    log-prob is taken back from the score, and our normalisation ranks them;
  - our search ends every hypothesis still running at the limit with EOS and counts EOS's
    log-prob; CTranslate2 stops there without EOS, so those get EOS's log-prob from its `score_batch`;
  - with --no-repeat-ngram CTranslate2 renormalises the log-probs over the tokens it leaves
    allowed, ours are the model's own: the outputs are scored again with `score_batch`; so they are
    for a model whose decoder starts from <pad> (Marian's), where CTranslate2 is asked never to emit it.
What can still differ is in `CT2Translator.search_ids`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, TypeAlias

from nmt.config import DecodeConfig, ModelConfig, from_dict
from nmt.errors import CheckpointError, ConfigError
from nmt.files import checked_tokenizers, export_languages, read_json
from nmt.hypotheses import Hypothesis, max_lengths, max_source_tokens, normalise
from nmt.layout import BEST, CONFIG_FILE, EXPORT_FILE, EXPORT_FORMAT, LAST, MODEL_FILE
from nmt.line_translator import LineTranslator
from nmt.runtime import all_cores
from nmt.tokenizer import Tokenizer

Found: TypeAlias = list[list[tuple[list[str], float]]]  # per source, each hypothesis: (its pieces, its log-prob)
COMPUTE_TYPES = (
    "default",
    "auto",
    "float32",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
)


def import_ctranslate2() -> Any:
    """The ctranslate2 module, imported on first use: it is an optional dependency."""
    try:
        import ctranslate2
    except ImportError as e:
        raise ConfigError("ctranslate2 is not installed; install it with: pip install 'nmt[ct2]'") from e
    return ctranslate2


def ended(tokens: list[str], eos: str) -> bool:
    return bool(tokens) and tokens[-1] == eos


def read_export(path: Path) -> dict[str, Any]:
    """nmt.json of an export directory, with a clear error for anything that is not one."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory")
    file = path / EXPORT_FILE
    if not file.is_file():
        if (path / MODEL_FILE).exists() or (path / BEST).exists() or (path / LAST).exists():
            raise CheckpointError(
                f"{path}: a PyTorch model, not a CTranslate2 export; leave out --engine ctranslate2, "
                f"or export it first: nmt export -m {path} --format ctranslate2 --out DIR"
            )
        raise CheckpointError(
            f"{file}: missing; -m with --engine ctranslate2 needs a directory written by "
            "`nmt export --format ctranslate2`"
        )
    desc = read_json(file)
    if desc.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{file}: format {desc.get('format')!r}, expected {EXPORT_FORMAT!r}; re-run nmt export")
    return desc


def load_tokenizers(path: Path, desc: dict[str, Any]) -> tuple[Tokenizer, Tokenizer]:
    """The source and target SentencePiece models named in nmt.json, checked against their sha256."""
    src, tgt = checked_tokenizers(
        path,
        desc,
        path / EXPORT_FILE,
        fix="re-run nmt export",
        missing="the export is incomplete, re-run nmt export",
        mismatch="does not match the export (sha256 differs); re-run nmt export",
    )
    return src, tgt


def ct2_device(name: str | None, ct2: Any) -> tuple[str, int]:
    """--device (cpu, cuda, cuda:N or None for CUDA when there is one) as CTranslate2's (device, index)."""
    gpus = ct2.get_cuda_device_count()
    if not name or name == "auto":
        return ("cuda", 0) if gpus else ("cpu", 0)
    kind, _, index = name.partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        if int(index or 0) >= gpus:
            raise ConfigError(f"--device {name}: CTranslate2 sees {gpus} CUDA device(s) on this machine")
        return "cuda", int(index or 0)
    raise ConfigError(f"--device {name!r} is not a device name; use cpu, cuda or cuda:N")


PRECISION_FLAGS = {"int8": "--int8", "bfloat16": "--bf16"}  # the compute types `nmt translate` asks for, by flag


def unsupported(ct2: Any, device: str, index: int, compute_type: str) -> str:
    """One line for a compute type CTranslate2 cannot use on this device: the ones it can, and the flags to use."""
    supported = sorted(ct2.get_supported_compute_types(device, index))
    flag = PRECISION_FLAGS.get(compute_type)
    ways = [f"leave out {flag}" if flag else "leave out the precision"]
    ways += [f"use {f}" for t, f in PRECISION_FLAGS.items() if t in supported and t != compute_type]
    return (
        f"CTranslate2 cannot compute in {compute_type} on {device} here (it can in {', '.join(supported)}); "
        f"{' or '.join(ways)}"
    )


class CT2Translator(LineTranslator):
    """A CTranslate2 export plus decoding settings; the same interface as `nmt.translate.Translator`
    (search only: sampling, --unk-penalty and --min-len are the PyTorch engine's)."""

    def __init__(
        self,
        path: Path,
        engine: Any,
        src_tok: Tokenizer,
        tgt_tok: Tokenizer,
        max_positions: int,
        config: DecodeConfig,
        align: bool = False,
        src_lang: str | None = None,
    ):
        self.align = self.check_align(align)  # a ConfigError when asked: CTranslate2 gives no attention
        for name, flag in (("unk_penalty", "--unk-penalty"), ("min_len", "--min-len")):
            if getattr(config, name):
                raise ConfigError(f"{flag} is not available with --engine ctranslate2; use the PyTorch engine")
        self.path, self.engine, self.config = path, engine, config
        self.src_tok, self.tgt_tok, self.max_positions = src_tok, tgt_tok, max_positions
        self.src_pieces = src_tok.pieces()  # ids -> CTranslate2's token strings
        tgt_pieces = tgt_tok.pieces()
        self.tgt_ids = {piece: i for i, piece in enumerate(tgt_pieces)}  # and back
        # the vocabulary's special tokens (an imported one's are not nmt's): </s> ends an output
        ids = tgt_tok.specials
        self.eos = tgt_pieces[ids.eos]
        # No output holds <pad> (nmt.search.never_pad). CTranslate2 bans a token by renormalising the others'
        # log-probs, so it is asked to only where pad has real probability: a model whose decoder starts from it
        # (Marian's), whose outputs are then scored again (_rescore). nmt's own models give pad no more than the
        # label-smoothing floor and are searched as they always were.
        self.suppress = [[tgt_pieces[ids.pad]]] if ids.bos == ids.pad else None
        self.max_src_tokens = max_source_tokens(max_positions, config)
        self.src_lang = src_lang

    @classmethod
    def load(
        cls,
        model_dir: Path,
        config: DecodeConfig = DecodeConfig(),
        device: str | None = None,
        threads: int | None = None,
        compute_type: str = "default",
    ) -> CT2Translator:
        """Open an export directory. `compute_type` "default" computes in the exported precision;
        "int8", "bfloat16", ... convert the weights when loading."""
        ct2 = import_ctranslate2()
        path = Path(model_dir)
        desc = read_export(path)
        try:
            max_positions = from_dict(ModelConfig, desc.get("model") or {}, where=str(path / EXPORT_FILE)).max_positions
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{path / EXPORT_FILE}: invalid model config: {e}") from e
        src_tok, tgt_tok = load_tokenizers(path, desc)
        if compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"compute type {compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}")
        kind, index = ct2_device(device, ct2)
        try:
            engine = ct2.Translator(
                str(path),
                device=kind,
                device_index=index,
                compute_type=compute_type,
                inter_threads=1,
                intra_threads=threads or all_cores(),
            )
        except ValueError as e:  # an unsupported compute type on this device
            raise ConfigError(unsupported(ct2, kind, index, compute_type)) from e
        except RuntimeError as e:
            raise CheckpointError(
                f"{path}: CTranslate2 cannot load it ({str(e).strip()[:300]}); "
                f"the export is damaged or from another version (see {path / CONFIG_FILE}); "
                "re-run nmt export"
            ) from e
        lang = export_languages(path, desc)["src_lang"]
        return cls(
            path, engine, src_tok, tgt_tok, max_positions, config, src_lang=lang if isinstance(lang, str) else None
        )

    def with_config(self, align: bool | None = None, **changes: Any) -> CT2Translator:
        return CT2Translator(
            self.path,
            self.engine,
            self.src_tok,
            self.tgt_tok,
            self.max_positions,
            replace(self.config, **changes),
            self.align if align is None else align,
            self.src_lang,
        )

    def search_ids(self, ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Search every non-empty id sequence with CTranslate2, one call per output length limit
        (it sorts and batches by length itself); input order kept.

        Greedy search gives our tokens and scores in every case (scores within float32 rounding,
        about 1e-5). Beam search does too, except: (1) at a sentence's length limit, when </s> is
        among the beam_size best candidates of the last step, ours lets the next-best continuation
        in and ends it with </s>, CTranslate2 does not; (2) when more than beam_size hypotheses
        end on a sentence's last step, ours keeps the first ones (by step, then log-prob),
        CTranslate2 the best by log-prob * length, nearly always the same ones; (3) with
        --no-repeat-ngram, or for a model whose decoder starts from pad (pad suppressed), CTranslate2 ranks
        the beams by renormalised log-probs."""
        results: list[list[Hypothesis]] = [[] for _ in ids]
        todo = [i for i, seq in enumerate(ids) if seq]
        if not todo:
            return results
        limits = max_lengths([len(ids[i]) + 1 for i in todo], self.config.max_len_a, self.config.max_len_b)
        groups: dict[int, list[int]] = {}
        for i, limit in zip(todo, limits):
            groups.setdefault(limit, []).append(i)
        for limit, members in sorted(groups.items()):
            sources = [[self.src_pieces[t] for t in ids[i]] for i in members]
            for i, hyps in zip(members, self._search(sources, limit)):
                results[i] = hyps
        return results

    def _search(self, sources: list[list[str]], limit: int) -> list[list[Hypothesis]]:
        """n-best lists for sources that share one output length limit."""
        found = self._translate(sources, limit)
        self._rescore(sources, found)
        return self._ranked(found)

    def _translate(self, sources: list[list[str]], limit: int) -> Found:
        """CTranslate2's hypotheses of each source, with the log-prob taken back from its score."""
        cfg = self.config
        beam = cfg.beam_size
        if limit == 0:  # CTranslate2 needs one step at least; our search ends every output at once
            return [[([], 0.0)] for _ in sources]
        results = self.engine.translate_batch(
            sources,
            beam_size=beam,
            num_hypotheses=beam,  # all that end; ranked below with our length normalisation
            length_penalty=0.0 if beam == 1 else -1.0,  # greedy: the plain sum; beam: see the module's doc
            max_decoding_length=limit,
            min_decoding_length=0,  # an output may be empty, as in ours
            max_input_length=0,  # translate_batch has cut longer sentences already
            no_repeat_ngram_size=cfg.no_repeat_ngram,
            suppress_sequences=self.suppress,
            return_scores=True,
            return_end_token=True,  # lengths count EOS, as ours do
            max_batch_size=cfg.batch_tokens,
            batch_type="tokens",
        )
        return [
            [
                (tokens, score / len(tokens) if beam > 1 else score)  # score = log-prob * length
                for tokens, score in zip(r.hypotheses, r.scores)
            ]
            for r in results
        ]

    def _rescore(self, sources: list[list[str]], found: Found) -> None:
        """Score again by CTranslate2 (teacher forcing, EOS appended), in place: the outputs cut at the limit,
        which our search ends with EOS there; and with --no-repeat-ngram or pad suppressed all of them, since
        CTranslate2 then renormalises the log-probs over the tokens left allowed, ours do not."""
        cfg = self.config
        renormalised = bool(cfg.no_repeat_ngram or self.suppress)
        rescore = [
            (s, h)
            for s, hyps in enumerate(found)
            for h, (tokens, _) in enumerate(hyps)
            if renormalised or not ended(tokens, self.eos)
        ]
        if not rescore:
            return
        bodies = [found[s][h][0][:-1] if ended(found[s][h][0], self.eos) else found[s][h][0] for s, h in rescore]
        scored = self.engine.score_batch(
            [sources[s] for s, _ in rescore],
            bodies,
            max_input_length=0,
            max_batch_size=cfg.batch_tokens,
            batch_type="tokens",
        )
        for (s, h), body, result in zip(rescore, bodies, scored):
            log_prob = sum(result.log_probs) if renormalised else found[s][h][1] + result.log_probs[-1]
            found[s][h] = (body + [self.eos], log_prob)

    def _ranked(self, found: Found) -> list[list[Hypothesis]]:
        """The `nbest` best of each source by our length normalisation, best first."""
        cfg = self.config
        out = []
        for hyps in found:
            ranked = [
                Hypothesis(
                    [self.tgt_ids[t] for t in tokens[:-1]],
                    normalise(lp, len(tokens), length_penalty=cfg.length_penalty, normalize=cfg.normalize),
                    lp,
                )
                for tokens, lp in hyps
            ]
            ranked.sort(key=lambda h: h.score, reverse=True)
            out.append(ranked[: cfg.nbest])
        return out
