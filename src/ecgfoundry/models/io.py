"""Safe checkpoint loading, the project's model folder, and Hugging Face Hub download.

The project's format is a folder with ``config.json`` (family, config, format version) and
``model.safetensors``. Foreign ``.pt``/``.pth`` files load with ``torch.load(weights_only=True)``
(plus an allow-list of numpy scalar types some published files contain); anything that needs
arbitrary unpickling is refused unless ``allow_unsafe=True`` — unpickling can run any code.
Training containers that pickle configuration objects of packages we do not import (e.g. a
Lightning ``.ckpt`` holding an OmegaConf config) load with :func:`load_restricted_checkpoint`,
which builds inert stand-ins for those classes and refuses everything else.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pickle
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ecgfoundry import __version__
from ecgfoundry.atomic import atomic_dir, json_default
from ecgfoundry.errors import ReportedError
from ecgfoundry.models.base import ECGModel

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
UNSAFE_FLAG = "allow_unsafe=True (CLI: --allow-unsafe)"


class CheckpointError(ValueError, ReportedError):
    """A checkpoint that cannot be loaded: the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that only loads by unpickling arbitrary objects (refused by default)."""


# Numpy scalars that training scripts store in checkpoints (e.g. ECGFounder's val_auroc), under
# their numpy 2 and numpy 1 pickle names.
_SCALAR = np._core.multiarray.scalar
_NUMPY_SAFE_GLOBALS: list[Any] = [
    _SCALAR,
    (_SCALAR, "numpy.core.multiarray.scalar"),
    np.dtype,
    *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")),
]


def load_torch_checkpoint(
    path: str | Path, *, allow_unsafe: bool = False, safe_globals: Iterable[Any] = ()
) -> Any:
    """``torch.load`` that never unpickles arbitrary objects unless ``allow_unsafe``.

    ``safe_globals`` adds classes the weights-only unpickler may build (e.g. a stand-in for a
    config class pickled by the original training code).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    allowed = [*_NUMPY_SAFE_GLOBALS, *safe_globals]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_unsafe:
            found = re.search(r"GLOBAL (\S+)", str(error))
            needs = f" (it needs {found[1]})" if found else ""
            raise UnsafeCheckpointError(
                path,
                f"this checkpoint holds Python objects that only load by unpickling{needs}, "
                "which can run arbitrary code from the file. Load it only if you trust its "
                f"source, with {UNSAFE_FLAG}.",
            ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(path, f"not a readable torch checkpoint ({error})") from error
    return torch.load(path, map_location="cpu", weights_only=False)


class StandIn(dict):
    """Inert stand-in for a class of a package that is not imported (see
    :func:`load_restricted_checkpoint`). Its pickled state lands in the instance ``__dict__``
    (``BUILD``) or in the dict itself (``SETITEMS``); constructor arguments are dropped, and
    the class defines no method the unpickler would call."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()


def _plain_dict(*args: Any) -> dict:
    """``collections.defaultdict(factory)`` restored as a plain dict (the factory is dropped)."""
    return {}


def _subscripted(origin: Any, args: Any) -> tuple[Any, Any]:
    """``operator.getitem`` as pickled for typing annotations (``Union[int, str]``): the pair."""
    return (origin, args)


def _sealed(function: Any) -> Any:
    """``function`` behind a callable without attributes: a pickle's ``BUILD`` cannot then set
    attributes (``__defaults__``, ...) of the module-level function itself."""
    call = type(function.__name__, (), {"__slots__": (), "__call__": staticmethod(function)})
    return call()


# The objects a restricted unpickling may use, by the name the pickle gives them: immutable
# builtin types and sealed functions only.
_RESTRICTED_GLOBALS: dict[tuple[str, str], Any] = {
    **{("builtins", t.__name__): t for t in (bool, bytearray, bytes, complex, dict, float,
                                            frozenset, int, list, set, str, tuple)},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _sealed(_plain_dict),
    ("_operator", "getitem"): _sealed(_subscripted),
    ("operator", "getitem"): _sealed(_subscripted),
    ("torch", "Size"): torch.Size,
    ("torch._utils", "_rebuild_tensor_v2"): _sealed(torch._utils._rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _sealed(torch._utils._rebuild_parameter),
}  # fmt: skip
_PYTHON2_NAMES = {"unicode": "str", "long": "int"}  # protocol-2 pickles name builtins this way


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle that names a class or function outside the restricted allow-list."""

    def __init__(self, module: str, name: str):
        self.qualified = f"{module}.{name}"
        super().__init__(f"refused global {self.qualified}")


def restricted_unpickler(stand_in_modules: Iterable[str]) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose unpickler imports nothing: names in
    ``_RESTRICTED_GLOBALS`` give those objects, classes of ``stand_in_modules`` (module names
    or their parents, e.g. ``"omegaconf"``) give :class:`StandIn` subclasses of the same
    module and name, anything else raises :class:`RefusedGlobal`."""
    prefixes = tuple(stand_in_modules)
    stand_ins: dict[tuple[str, str], type] = {}

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "__builtin__":
                module, name = "builtins", _PYTHON2_NAMES.get(name, name)
            if (module, name) in _RESTRICTED_GLOBALS:
                return _RESTRICTED_GLOBALS[module, name]
            if any(module == p or module.startswith(p + ".") for p in prefixes):
                key = (module, name)
                if key not in stand_ins:
                    stand_ins[key] = type(name, (StandIn,), {"__module__": module,
                                                            "__qualname__": name})  # fmt: skip
                return stand_ins[key]
            raise RefusedGlobal(module, name)

    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()

    module = types.ModuleType("ecgfoundry_restricted_pickle")
    module.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    return module


def load_restricted_checkpoint(path: str | Path, *, stand_in_modules: Iterable[str]) -> Any:
    """A torch checkpoint read without running anything from it, with inert stand-ins for
    the classes of ``stand_in_modules`` (their packages need not be installed).

    ``torch.load`` (which reads the tensors) gets a pickle module whose unpickler resolves
    names from an explicit table only: plain containers and scalars, ``OrderedDict``, torch's
    tensor rebuild functions, ``defaultdict`` (as a plain dict) and ``operator.getitem`` (as
    a pair, for typing annotations), the functions sealed so that the pickle cannot set their
    attributes; classes of ``stand_in_modules`` become :class:`StandIn` subclasses made for
    this load. Any other name raises :class:`UnsafeCheckpointError` (also with
    ``allow_unsafe``: this reader never falls back to plain unpickling). torch's own
    weights-only unpickler cannot read OmegaConf containers: it refuses ``SETITEMS`` on the
    ``defaultdict`` they pickle.
    """
    path, stand_in_modules = Path(path), tuple(stand_in_modules)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    pickle_module = restricted_unpickler(stand_in_modules)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module)
    except RefusedGlobal as error:
        raise UnsafeCheckpointError(
            path,
            f"refers to {error.qualified}, which the restricted unpickler does not allow "
            "(nothing from the file was run). Only plain data, tensors and stand-ins for "
            f"{', '.join(stand_in_modules)} classes are read.",
        ) from error
    except Exception as error:  # any failure to unpickle means an unreadable file
        raise CheckpointError(path, f"not a readable torch checkpoint ({error})") from error


def plain_config(obj: Any) -> Any:
    """Plain dicts, lists and values from a config restored with stand-ins: OmegaConf
    containers and value nodes keep their content in ``_content`` / ``_val``."""
    if isinstance(obj, StandIn):
        state = vars(obj)
        if "_content" in state:
            return plain_config(state["_content"])
        if "_val" in state:
            return plain_config(state["_val"])
        return {str(k): plain_config(v) for k, v in {**obj, **state}.items()}
    if isinstance(obj, Mapping):
        return {k: plain_config(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain_config(v) for v in obj]
    return obj


def rename_key(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """A checkpoint key renamed by the first ``(regex prefix, replacement)`` row of a family's
    key map that matches its start (the rest of the key kept), or None if none matches."""
    for pattern, replacement in table:
        match = re.match(pattern, key)
        if match:
            return match.expand(replacement) + key[match.end() :]
    return None


def load_state_dict_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path
) -> None:
    """Load every model tensor from ``state`` and use every ``state`` tensor, or raise listing
    the missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                shown = ", ".join(items[:20]) + (
                    f" ... (+{len(items) - 20})" if len(items) > 20 else ""
                )
                parts.append(f"{len(items)} {title}: {shown}")
        raise CheckpointError(source, "checkpoint does not match the model; " + "; ".join(parts))
    model.load_state_dict(dict(state), strict=True)


def save_model(model: Any, folder: str | Path) -> Path:
    """Write the project's format (``config.json`` + ``model.safetensors``) atomically."""
    with atomic_dir(folder) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {
            "family": model.family,
            "format_version": FORMAT_VERSION,
            "ecgfoundry_version": __version__,
            "config": model.config.to_dict(),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    return Path(folder)


def read_model_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config.json content and the weights of a model folder, with clear errors."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    inner = folder / "model"
    if not weights_path.is_file() and (inner / WEIGHTS_FILE).is_file():
        raise CheckpointError(folder, f"a run folder, not a model folder: its model is {inner}")
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                path,
                "not found (a model folder holds config.json and model.safetensors; "
                "convert a published checkpoint with `ecgfoundry convert` first)",
            )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(config_path, f"invalid JSON ({error})") from error
    if config.get("format_version") != FORMAT_VERSION or "family" not in config:
        raise CheckpointError(config_path, "not an ecgfoundry model config (format_version 1)")
    try:
        weights = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(weights_path, f"unreadable safetensors ({error})") from error
    return config, weights


def download_from_hub(
    repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """A local snapshot of a Hugging Face Hub model repository (uses the HF cache; honours
    ``HF_HUB_OFFLINE=1``, in which case the snapshot must already be cached)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"hf-hub:{repo_id}", f"could not download it and no copy is "
                              f"cached ({first}); download it where the Hub is reachable, "
                              "or pass a local model folder") from error  # fmt: skip
    return Path(path)


def _sha256(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def _tensor_bytes(model: ECGModel) -> Iterator[bytes]:
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        yield f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\n".encode()
        yield flat.view(torch.uint8).numpy().tobytes()


def model_fingerprint(model: str | Path | ECGModel) -> str:
    """What identifies the starting weights: a hash of an object's tensors or of a folder's
    weights file, else the name."""
    if isinstance(model, ECGModel):
        return _sha256(_tensor_bytes(model))
    weights = Path(str(model)) / "model.safetensors"
    if weights.is_file():
        with weights.open("rb") as handle:
            return _sha256(iter(lambda: handle.read(1 << 20), b""))
    return str(model)


def model_description(model: str | Path | ECGModel) -> str | dict[str, Any]:
    """How the run config names the model: its path or name, or an object's family and config."""
    if isinstance(model, ECGModel):
        return _json_plain({"family": model.family, "config": model.config.to_dict()})
    return str(model)


def _json_plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (so that a resumed run's config compares equal)."""
    return json.loads(json.dumps(value, default=json_default))
