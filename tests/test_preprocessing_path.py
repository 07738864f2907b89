"""One preprocessing path: for every model family's input spec, the same PTB-XL record becomes
the same model input in training (random crops of the cache), evaluation (sliding windows of
the cache), ``predict``/``embed`` (inference.prepare), ``pipeline_for`` and ``model_windows``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_ptbxl import copy_records

from ecgfoundry import inference
from ecgfoundry.adapt.data import Split, TaskData, ptbxl_cache, read_windows, window_loader
from ecgfoundry.data import ptbxl
from ecgfoundry.data.readers import read_record
from ecgfoundry.data.transforms import model_windows, pipeline_for, window_starts
from ecgfoundry.models import create_model, list_models
from ecgfoundry.spec import InputSpec

# One preset per distinct input spec in the registry: every family's specs are covered.
SPECS: dict[str, str] = {}
for _row in list_models():
    SPECS.setdefault(json.dumps(_row["spec"], sort_keys=True), _row["name"])


@pytest.fixture(scope="module")
def two_records(ptbxl_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = ptbxl.load(ptbxl_root).table
    dest = tmp_path_factory.mktemp("two")
    copy_records(ptbxl_root, dest, [int(i) for i in table.index[:2]])
    return dest


@pytest.mark.parametrize("name", sorted(SPECS.values()))
def test_one_record_one_model_input_everywhere(name: str, two_records: Path, tmp_path: Path):
    model = create_model(name)
    spec: InputSpec = model.spec
    store = ptbxl_cache(two_records, spec, cache_dir=tmp_path)
    for row, path in zip(store.index["row"], store.index["path"], strict=True):
        record = read_record(path)
        windows, _ = model_windows(record, spec)
        # evaluation: every window of the cached record
        cached = np.asarray(store.signals[row])
        starts = window_starts(cached.shape[-1], spec.samples)
        evaluation = read_windows(store.signals, np.full(len(starts), row), starts, spec.samples)
        np.testing.assert_array_equal(evaluation, windows)
        # training: the training loader's random crops are cuts of the record prepared whole
        # (the windows above are such cuts at their starts)
        prepared = pipeline_for(spec, crop=False)(record).signal
        split = Split(store.signals, np.array([row]), np.zeros((1, 0), np.float32), np.array([row]))
        data = TaskData(labels=[], window=spec.samples, train=split, val=split, test=None,
                        description={})  # fmt: skip
        offsets = data.train_crops(np.zeros(8, dtype=np.int64), np.random.default_rng(0))
        loader = window_loader(data.train, spec.samples, [[(0, int(o)) for o in offsets]])
        crops = next(iter(loader))["x"].numpy()
        for crop, offset in zip(crops, offsets, strict=True):
            np.testing.assert_array_equal(crop, prepared[:, offset : offset + spec.samples])
        np.testing.assert_array_equal(prepared[:, starts[-1] : starts[-1] + spec.samples],
                                      windows[-1])  # fmt: skip
        # predict / embed
        inputs = inference.prepare(model, [record])
        np.testing.assert_array_equal(inputs.windows, windows)
        # pipeline_for: the first window
        np.testing.assert_array_equal(pipeline_for(spec)(record).signal, windows[0])
        assert windows.shape[1:] == (len(spec.leads), spec.samples)
