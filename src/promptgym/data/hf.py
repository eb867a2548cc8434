"""Datasets of the Hugging Face ``datasets`` library (the optional extra ``hf``).

``hf:NAME[/CONFIG][@SPLIT]``:

- NAME is a Hub dataset, ``ORG/NAME`` (``stanfordnlp/sst2``), or a local directory: one written by
  ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (read with ``load_from_disk``) or a
  folder of data files the library can read. A NAME that starts with ``/``, ``.`` or ``~``, or
  that names an existing directory, is a local one (the library's own order: a directory first).
- CONFIG: ``hf:ORG/NAME/CONFIG``. Two parts, ``a/b``, are read as the dataset ``a/b`` first; only
  if there is no such dataset, as config ``b`` of a dataset ``a`` (a name without an ORG, which
  current Hub clients refuse but caches and older releases still have). A local ``DIR/CONFIG``
  is a config that DIR's README.md (or .huggingface.yaml) lists.
- SPLIT: default ``train``, else the only split. The library's slicing works (``@train[:1000]``,
  ``@train[:10%]``, ``@train+validation``), so a big split need not become millions of examples.

Rows are read in batches, only the input (or the columns an input template names), target and
choices columns. A target column of type
``ClassLabel`` becomes the label names, and all of its names are every example's choices. The
library's errors become one line each (missing dataset, config, split or field); its progress
bars and log messages are silenced while it works. Offline (``HF_HUB_OFFLINE=1``) the library
reads what an earlier online load left in its cache (``HF_DATASETS_CACHE``); the Hub's own file
cache (``HF_HUB_CACHE``) alone is not enough for it.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from promptgym.data.dataset import Dataset
from promptgym.data.fields import NAMED, InputTemplate
from promptgym.data.rows import (BOTH_INPUTS, CHOICE_FIELDS, INPUT_FIELDS, TARGET_FIELDS, check_choices,
                                 pick_field, rows_to_dataset)
from promptgym.errors import DataError

BATCH = 1000  # rows converted at a time


class _NotFound(DataError):
    """No such dataset (so a ``a/b`` may still be dataset ``a`` with config ``b``)."""


class _NoConfig(DataError):
    def __init__(self, message: str, listing: str) -> None:
        super().__init__(message)
        self.listing = listing


def load_hf(spec: str, input_field: str | None = None, target_field: str | None = None,
            choices_field: str | None = None, infer_choices: bool = True, input_template: str | None = None) -> Dataset:
    """``spec`` is what follows ``hf:``; the fields as for files (``rows.rows_to_dataset``), the
    input rendered from the columns ``input_template`` names when it is given."""
    source = f"hf:{spec}"
    if input_template is not None and input_field is not None:
        raise DataError(BOTH_INPUTS)
    named = InputTemplate.parse(input_template).names if input_template is not None else ()
    datasets = _library(source)
    ref, split = _parse(spec, source)
    with _quiet(datasets):
        loaded = _open(datasets, ref, source)
        parts = _pick_split(datasets, loaded, split, ref, source)
        first_split, first = parts[0][0], parts[0][1]
        for name, ds, _, _ in parts[1:]:
            if ds.features != first.features:
                raise DataError(f"{source}: splits '{first_split}' and '{name}' have different columns or types")
        features = first.features
        here = f"hf:{ref}@{first_split}"
        columns = dict.fromkeys(features)
        listing = f"columns: {', '.join(features)}"
        for name in named:
            if name not in columns:
                raise DataError(f"{here}: field '{name}' missing ({NAMED}; {listing})")
            _check_text_column(features[name], name, here, list_ok=False)
        try:
            f_in = None if named else pick_field(columns, input_field, INPUT_FIELDS, here, "input")
            f_target = pick_field(columns, target_field, TARGET_FIELDS, here, "target")
            f_choices = pick_field(columns, choices_field, CHOICE_FIELDS, here, "choices", required=False)
        except DataError as exc:
            text = str(exc)
            raise DataError(f"{text[:-1]}; {listing})" if text.endswith(")") else f"{text} ({listing})") from None
        assert (f_in is not None or named) and f_target is not None
        for field, list_ok in ((f_in, False), (f_target, True), (f_choices, True)):
            if field is not None:
                _check_text_column(features[field], field, here, list_ok)
        names = _class_names(features[f_target])
        label_names = names if names is not None and f_choices is None and len(names) >= 2 else None
        wanted = list(dict.fromkeys(f for f in (*named, f_in, f_target, f_choices) if f is not None))
        data = rows_to_dataset(
            _rows(parts, ref, wanted, features), source=source, name=_name(ref),
            input_field=f_in, target_field=f_target, choices_field=f_choices,
            infer_choices=infer_choices and label_names is None, input_template=input_template,
        )
    if label_names is not None:
        choices = check_choices(list(label_names), here, f_target)
        data.examples = [replace(e, targets=(e.target.strip(),), choices=choices) for e in data.examples]
    return data


def _library(source: str) -> Any:
    try:
        import datasets
    except ModuleNotFoundError as exc:
        if exc.name == "datasets":
            raise DataError(f"{source}: needs the 'datasets' library: pip install 'promptgym[hf]'") from None
        raise DataError(f"{source}: the 'datasets' library does not import ({exc})") from None
    except ImportError as exc:
        raise DataError(f"{source}: the 'datasets' library does not import ({exc})") from None
    return datasets


def _parse(spec: str, source: str) -> tuple[str, str | None]:
    """NAME[/CONFIG] and SPLIT (None: the default) from ``NAME[/CONFIG][@SPLIT]``."""
    ref, at, split = spec.rpartition("@")
    if not at or "/" in split:  # no "@", or one inside a path ("dir@2/data")
        ref, split = spec, None
    if not ref.strip():
        raise DataError(f"{source}: no dataset named (hf:NAME[/CONFIG][@SPLIT], e.g. hf:stanfordnlp/sst2@validation)")
    if split is not None and not split.strip():
        raise DataError(f"{source}: empty split after '@'")
    return ref, split


@contextmanager
def _quiet(datasets: Any) -> Iterator[None]:
    """No progress bars, log lines or warnings from the library (or the Hub client) on stderr; the
    caller's settings are back afterwards."""
    from datasets.utils import logging as ds_logging

    hub = _hub_utils()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verbosity = ds_logging.get_verbosity()
        bars_off = datasets.utils.are_progress_bars_disabled()
        hub_state = (hub.logging.get_verbosity(), hub.are_progress_bars_disabled()) if hub else None
        ds_logging.set_verbosity_error()
        datasets.utils.disable_progress_bars()
        if hub:
            hub.logging.set_verbosity_error()
            hub.disable_progress_bars()
        try:
            yield
        finally:
            ds_logging.set_verbosity(verbosity)
            if not bars_off:
                datasets.utils.enable_progress_bars()
            if hub and hub_state:
                hub.logging.set_verbosity(hub_state[0])
                if not hub_state[1]:
                    hub.enable_progress_bars()


def _hub_utils() -> Any:
    try:
        from huggingface_hub import utils
    except ImportError:
        return None
    needed = ("logging", "are_progress_bars_disabled", "disable_progress_bars", "enable_progress_bars")
    return utils if all(hasattr(utils, n) for n in needed) else None


# -- finding the dataset ---------------------------------------------------------------------------

def _is_local(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or Path(ref).expanduser().is_dir()


def _open(datasets: Any, ref: str, source: str) -> Any:
    """A ``Dataset`` or ``DatasetDict``."""
    if _is_local(ref):
        return _open_local(datasets, ref, source)
    parts = ref.split("/")
    if len(parts) > 3 or not all(p.strip() for p in parts):
        raise DataError(f"{source}: expected hf:NAME, hf:ORG/NAME, hf:NAME/CONFIG or hf:ORG/NAME/CONFIG "
                        "(or a local directory: hf:./DIR)")
    if len(parts) == 3:
        return _open_hub(datasets, "/".join(parts[:2]), parts[2], source)
    if len(parts) == 1:
        return _open_hub(datasets, ref, None, source)
    try:
        return _open_hub(datasets, ref, None, source)
    except _NotFound as whole:
        try:  # NAME/CONFIG: a dataset without an ORG (the Hub had such names; caches and older releases do)
            return _open_hub(datasets, parts[0], parts[1], source)
        except _NoConfig as exc:
            raise DataError(f"{source}: no dataset '{ref}', and dataset '{parts[0]}' has no config "
                            f"'{parts[1]}'{exc.listing}") from None
        except DataError:
            raise DataError(str(whole)) from None


def _saved(path: Path) -> bool:
    """Written by ``save_to_disk`` (a ``DatasetDict``'s or a ``Dataset``'s own files)."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _open_local(datasets: Any, ref: str, source: str) -> Any:
    path = Path(ref).expanduser()
    if path.name in _card_configs(path.parent):  # DIR/CONFIG (CONFIG may be a folder of DIR too)
        return _call(lambda: datasets.load_dataset(str(path.parent), path.name), str(path.parent), path.name,
                     source, local=True)
    if path.is_dir():
        if _saved(path):
            return _call(lambda: datasets.load_from_disk(str(path)), str(path), None, source, local=True)
        return _call(lambda: datasets.load_dataset(str(path)), str(path), None, source, local=True)
    if _card_configs(path.parent):
        return _call(lambda: datasets.load_dataset(str(path.parent), path.name), str(path.parent), path.name,
                     source, local=True)
    shown = "" if str(path) == ref else f" ({path})"
    raise _NotFound(f"{source}: no such directory{shown}")


def _card_configs(folder: Path) -> list[str]:
    """The configs a local dataset folder declares (the YAML of its README.md, .huggingface.yaml)."""
    import yaml  # a dependency of datasets

    names: list[str] = []
    for card in (folder / "README.md", folder / ".huggingface.yaml"):
        try:
            text = card.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if card.suffix == ".md":
            match = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
            text = match.group(1) if match else ""
        try:
            meta = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        configs = meta.get("configs") if isinstance(meta, dict) else None
        names += [str(c["config_name"]) for c in configs or [] if isinstance(c, dict) and "config_name" in c]
    return names


def _open_hub(datasets: Any, name: str, config: str | None, source: str) -> Any:
    return _call(lambda: datasets.load_dataset(name, config), name, config, source)


def _call(load: Any, name: str, config: str | None, source: str, local: bool = False) -> Any:
    """Run a load of the library; its exceptions become one-line DataErrors."""
    import datasets

    try:
        return load()
    except ConnectionError as exc:  # offline or no network, and not in the cache
        config_ = datasets.config
        offline = getattr(config_, "HF_HUB_OFFLINE", False) or getattr(config_, "HF_DATASETS_OFFLINE", False)
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else f"the Hub cannot be reached: {_first_line(exc)}"
        raise _NotFound(f"{source}: dataset '{name}' is not in the local cache ({datasets.config.HF_DATASETS_CACHE}) "
                        f"and {why}") from None
    except FileNotFoundError as exc:
        message = _first_line(exc)
        if local or "gated" in message:
            raise DataError(f"{source}: {message}") from None
        hint = "; a config is hf:ORG/NAME/CONFIG" if name.count("/") == 1 else ""
        raise _NotFound(f"{source}: no dataset '{name}' on the Hugging Face Hub, or no access to it{hint}") from None
    except ValueError as exc:
        if "must be 'namespace/name'" in str(exc):  # huggingface_hub 1.x and later: no bare names
            raise _NotFound(f"{source}: the Hub wants the dataset's full name, hf:ORG/{name} "
                            "(as on its page there)") from None
        raise _config_error(exc, name, config, source) from None
    except Exception as exc:  # noqa: BLE001 - anything else the library raises is one line too
        raise DataError(f"{source}: {type(exc).__name__}: {_first_line(exc)}") from None


def _config_error(exc: ValueError, name: str, config: str | None, source: str) -> DataError:
    text = str(exc)
    listed = re.search(r"(?:Available|available configs|Available configs in the cache): (\[.*?\])", text)
    configs: list[str] = []
    if listed:
        try:
            configs = [str(c) for c in ast.literal_eval(listed.group(1))]
        except (ValueError, SyntaxError):
            configs = []
    several = re.search(r"multiple '.*?' configurations in the cache: (.+)", text)
    if several:
        configs = [c.strip() for c in several.group(1).split(",")]
    in_cache = " in the local cache" if "cache" in text else ""
    if ("not found" in text and "BuilderConfig" in text) or "Couldn't find cache for" in text:
        listing = f" (configs{in_cache}: {', '.join(configs)})" if configs else ""
        return _NoConfig(f"{source}: dataset '{name}' has no config '{config}'{listing}", listing)
    if "Config name is missing" in text or several:
        example = f", e.g. hf:{name}/{configs[0]}" if configs else ""
        return DataError(f"{source}: dataset '{name}' has several configs{in_cache} ({', '.join(configs)}): "
                         f"name one{example}")
    return DataError(f"{source}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- splits and rows -------------------------------------------------------------------------------

def _pick_split(datasets: Any, loaded: Any, split: str | None, ref: str,
                source: str) -> list[tuple[str, Any, int, int]]:
    """``(split name, dataset, first row, end row)`` for each part of SPLIT."""
    if isinstance(loaded, datasets.DatasetDict):
        available = {str(k): v for k, v in loaded.items()}
    else:  # a single Dataset saved with save_to_disk: its own split if it knows it
        available = {str(loaded.split) if loaded.split else "train": loaded}
    names = ", ".join(available) or "none"
    if split is None:
        if "train" in available:
            split = "train"
        elif len(available) == 1:
            split = next(iter(available))
        else:
            raise DataError(f"{source}: no 'train' split (splits: {names}): name one, "
                            f"e.g. hf:{ref}@{next(iter(available), 'train')}")
    if split in available:
        return [(split, available[split], 0, available[split].num_rows)]
    try:
        instructions = datasets.ReadInstruction.from_spec(split).to_absolute(
            {k: v.num_rows for k, v in available.items()})
    except ValueError as exc:
        unknown = re.search(r'Unknown split "(.*?)"', str(exc))
        if unknown:
            raise DataError(f"{source}: no split '{unknown.group(1)}' (splits: {names})") from None
        if re.fullmatch(r"[\w.-]+", split):
            raise DataError(f"{source}: no split '{split}' (splits: {names})") from None
        raise DataError(f"{source}: bad split '{split}' ({_first_line(exc)}; e.g. train, train[:1000], "
                        "train[:10%], train+validation)") from None
    return [(i.splitname, available[i.splitname], i.from_, i.to) for i in instructions]


def _check_text_column(feature: Any, field: str, where: str, list_ok: bool) -> None:
    """The column holds text, numbers or class labels (or a list of them where a list is allowed)."""
    inner = _list_item(feature)
    if inner is not None and list_ok:
        feature = inner
    if _is_class_label(feature):
        return
    dtype = getattr(feature, "dtype", None)
    if type(feature).__name__ == "Value" and dtype not in ("binary", "large_binary"):
        return
    if isinstance(feature, dict):
        what = f"a struct ({', '.join(feature)})"
    elif inner is not None:
        what = "a list"
    elif dtype in ("binary", "large_binary"):
        what = "bytes"
    else:
        what = f"{type(feature).__name__} data"
    raise DataError(f"{where}: field '{field}' holds {what}, not text")


def _list_item(feature: Any) -> Any:
    """The item feature of a list column (``List``, ``LargeList``, ``Sequence``, ``[feature]``)."""
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    if type(feature).__name__ in ("List", "LargeList", "Sequence") and hasattr(feature, "feature"):
        return feature.feature
    return None


def _is_class_label(feature: Any) -> bool:
    return type(feature).__name__ == "ClassLabel" and hasattr(feature, "names")


def _class_names(feature: Any) -> list[str] | None:
    return list(feature.names) if _is_class_label(feature) else None


def _rows(parts: list[tuple[str, Any, int, int]], ref: str, wanted: list[str],
          features: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` of the wanted columns, class labels as their names, a batch at a time."""
    convert = {c: _converter(features[c], c) for c in wanted}
    for split, ds, start, stop in parts:
        view = ds.with_format(None).select_columns(wanted)
        for low in range(start, stop, BATCH):
            batch = view[low:min(low + BATCH, stop)]
            for k in range(len(batch[wanted[0]])):
                where = f"hf:{ref}@{split}:row {low + k}"
                yield where, {c: convert[c](batch[c][k], where) for c in wanted}


def _converter(feature: Any, field: str) -> Any:
    item = _list_item(feature)
    if item is not None and _is_class_label(item):
        one = _label_name(item.names, field)
        return lambda values, where: None if values is None else [one(v, where) for v in values]
    if _is_class_label(feature):
        return _label_name(feature.names, field)
    return lambda value, where: value


def _label_name(names: list[str], field: str) -> Any:
    def name(value: Any, where: str) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and 0 <= value < len(names):
            return names[value]
        if value == -1:
            raise DataError(f"{where}: field '{field}' is -1, no label (is this split unlabelled?)")
        raise DataError(f"{where}: field '{field}' is {value!r}, not a class of {names}")
    return name


def _name(ref: str) -> str:
    return Path(ref).name if _is_local(ref) else ref
