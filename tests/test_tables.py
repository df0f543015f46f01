"""Table data sets (csv, parquet): columns, labels, categories, missing cells, errors, the
preprocessing that predict reuses, data-file fingerprints, and the shared cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch

from minidl_cli.data import make_dataset
from minidl_cli.data.base import file_sha256
from minidl_cli.data.csv import csv as csv_dataset
from minidl_cli.data.csv import parquet as parquet_dataset
from minidl_cli.data.files import changed_files
from minidl_cli.data.table import encode_labelled, encode_table, read_labels

CASES = Path(__file__).parent / "cases"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def iris_like(tmp_path):
    rows = ["a,b,label"] + [f"{i},{i * 0.5},{'cat' if i % 3 else 'dog'}" for i in range(20)]
    return write(tmp_path / "train.csv", "\n".join(rows) + "\n")


@pytest.fixture
def case(tmp_path):
    """A scratch copy of one of the shared cases' folders (tests/cases/NAME)."""
    def copy(name: str) -> Path:
        return Path(shutil.copytree(CASES / name, tmp_path / name))
    return copy


# ---------------------------------------------------------------- columns and labels


def test_train_and_test_files_match_columns_by_name(tmp_path):
    train = write(tmp_path / "train.csv", "x1,x2,y\n1,2,10\n3,4,2\n5,6,10\n\n")
    test = write(tmp_path / "test.csv", "x2,y,x1,extra\n7,2,8,zzz\n")
    ds = csv_dataset(train, test=test, label="y", generator=gen())
    assert ds.feature_names == ["x1", "x2"]
    assert ds.x_train.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert ds.x_test.tolist() == [[8, 7]]  # columns matched by name, not position
    assert ds.num_classes == 2 and ds.class_names == ["2", "10"]  # numeric labels sort by value
    assert ds.y_train.tolist() == [1, 0, 1] and ds.y_test.tolist() == [0]
    assert ds.x_train.dtype == torch.float64 and ds.y_train.dtype == torch.int64
    assert ds.x_train.is_contiguous() and ds.task == "classification"


def test_string_labels_features_and_exclude(iris_like):
    ds = csv_dataset(iris_like, test_fraction=0.25, features=["b"], generator=gen())
    assert ds.feature_names == ["b"] and ds.class_names == ["cat", "dog"]
    assert len(ds.x_train) == 15 and len(ds.x_test) == 5
    ds = csv_dataset(iris_like, test_fraction=0.25, exclude=["a"], generator=gen())
    assert ds.feature_names == ["b"]
    with pytest.raises(ValueError, match="data.features .* or data.exclude .*not both"):
        csv_dataset(iris_like, test_fraction=0.25, features=["b"], exclude=["a"], generator=gen())


def test_test_fraction_is_a_seeded_partition(iris_like):
    a = csv_dataset(iris_like, test_fraction=0.3, generator=gen(1))
    b = csv_dataset(iris_like, test_fraction=0.3, generator=gen(1))
    c = csv_dataset(iris_like, test_fraction=0.3, generator=gen(2))
    assert torch.equal(a.x_test, b.x_test) and not torch.equal(a.x_test, c.x_test)
    rows = sorted(a.x_train[:, 0].tolist() + a.x_test[:, 0].tolist())
    assert rows == list(range(20))  # disjoint, and together all rows


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.01])
def test_test_fraction_must_leave_rows_on_both_sides(iris_like, fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        csv_dataset(iris_like, test_fraction=fraction, generator=gen())


@pytest.mark.parametrize("kwargs", [{}, {"test": "x.csv", "test_fraction": 0.2}])
def test_needs_exactly_one_of_test_and_fraction(iris_like, kwargs):
    with pytest.raises(ValueError, match="exactly one of data.test"):
        csv_dataset(iris_like, **kwargs, generator=gen())


def test_missing_columns_are_named(iris_like, tmp_path):
    with pytest.raises(ValueError, match=r"no column 'target'.*available columns: a, b, label"):
        csv_dataset(iris_like, test_fraction=0.2, label="target", generator=gen())
    with pytest.raises(ValueError, match=r"'c' \(from data.features\)"):
        csv_dataset(iris_like, test_fraction=0.2, features=["a", "c"], generator=gen())
    test = write(tmp_path / "test.csv", "a,label\n1,cat\n")
    with pytest.raises(ValueError, match=r"test\.csv has no feature column 'b'"):
        csv_dataset(iris_like, test=test, generator=gen())


def test_missing_file_names_it_and_where_paths_start(tmp_path, iris_like):
    with pytest.raises(FileNotFoundError, match="nope.csv not found .*relative to the config"):
        csv_dataset(tmp_path / "nope.csv", test_fraction=0.2, generator=gen())
    with pytest.raises(FileNotFoundError, match="missing_test.csv"):
        csv_dataset(iris_like, test=tmp_path / "missing_test.csv", generator=gen())


def test_delimiter_and_spaces_around_names(tmp_path):
    path = write(tmp_path / "semi.csv", "a ; b;label\n1;2;x\n3;4;y\n5;6;x\n")
    ds = csv_dataset(path, test=path, delimiter=";", generator=gen())
    assert ds.feature_names == ["a", "b"] and ds.x_train.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_several_regression_targets(tmp_path):
    path = write(tmp_path / "r.csv", "a,t1,t2\n1,0.5,10\n2,1.5,20\n3,2.5,30\n")
    ds = csv_dataset(path, test=path, task="regression", label=["t1", "t2"], generator=gen())
    assert ds.y_train.dtype == torch.float64 and ds.y_train.tolist() == [[0.5, 10], [1.5, 20],
                                                                          [2.5, 30]]
    assert ds.num_classes == 0 and ds.num_outputs == 2 and ds.target_names == ["t1", "t2"]
    assert ds.class_names is None and ds.feature_names == ["a"]
    with pytest.raises(ValueError, match="one label column.*task: regression"):
        csv_dataset(path, test=path, label=["t1", "t2"], generator=gen())


# ---------------------------------------------------------------- bad cells


def test_every_bad_cell_is_reported_with_its_line(tmp_path):
    rows = ["a,b,label"] + [f"{i},{'oops' if i % 2 else i},x" for i in range(30)]
    rows.insert(3, "")  # a blank line: later rows' line numbers move by one
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, generator=gen())
    lines = str(info.value).splitlines()
    assert "15 cells are not finite numbers" in lines[0] and "data.categorical" in lines[0]
    assert lines[1] == "  row 3, column 'b': 'oops' is not a number"  # data row 1: line 3
    assert lines[2] == "  row 6, column 'b': 'oops' is not a number"  # after the blank line 4
    assert len(lines) == 12 and lines[-1] == "  ... and 5 more"


def test_one_bad_cell_is_one_line(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,label\n1,2,0\n3,inf,1\n")
    with pytest.raises(ValueError, match=r"t\.csv, row 3, column 'b': 'inf' is not a finite"):
        csv_dataset(path, test=path, generator=gen())


def test_a_text_column_points_at_categorical(tmp_path):
    path = write(tmp_path / "t.csv", "a,color,label\n1,red,0\n2,blue,1\n")
    with pytest.raises(ValueError, match="column 'color' holds text .*data.categorical.*exclude"):
        csv_dataset(path, test=path, generator=gen())


def test_ragged_rows_are_counted_in_one_line_naming_the_first_by_its_line(tmp_path):
    """The first bad row by its line in the file (blank lines and lines of a quoted field
    counted), one line however many rows are bad."""
    path = write(tmp_path / "r.csv", 'a,label\n1,0\n\n"x\ny",0,9\n2,1\n3,1,7,7\n')
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, generator=gen())
    assert str(info.value) == (f"{path}: 2 rows do not have one field per column, the first "
                               "at line 4 (3 fields, the header has 2); fix or remove them")
    many = write(tmp_path / "many.csv", "a,label\n" + "1,0\n" * 3 + "1,0,9\n" * 19)
    with pytest.raises(ValueError) as info:
        csv_dataset(many, test=many, generator=gen())
    assert str(info.value).endswith(": 19 rows do not have one field per column, the first at "
                                    "line 5 (3 fields, the header has 2); fix or remove them")
    one = write(tmp_path / "one.csv", "a,label\n1,0\n2\n")
    with pytest.raises(ValueError, match=r"one\.csv: 1 row does not have one field per "
                                         r"column: line 3 \(1 field, the header has 2\); fix "
                                         r"or remove it$"):
        csv_dataset(one, test=one, generator=gen())


# ---------------------------------------------------------------- categories and missing cells


def test_categorical_one_hot_from_training_rows(tmp_path):
    train = write(tmp_path / "train.csv", "size,color,label\n1,red,a\n2,blue,b\n3,red,a\n")
    test = write(tmp_path / "test.csv", "size,color,label\n4,blue,b\n")
    ds = csv_dataset(train, test=test, categorical=["color"], generator=gen())
    assert ds.feature_names == ["size", "color=blue", "color=red"]
    assert ds.x_train.tolist() == [[1, 0, 1], [2, 1, 0], [3, 0, 1]]
    assert ds.x_test.tolist() == [[4, 1, 0]]
    new = write(tmp_path / "new.csv", "color,size\nred,5\ngreen,6\n")
    with pytest.raises(ValueError, match=r"new\.csv, row 3, column 'color': 'green' is not one"):
        encode_table(new, ds.preprocessing)


def test_missing_error_lists_the_cells(tmp_path):
    path = write(tmp_path / "m.csv", "a,b,label\n1,,x\n2,3,y\nNA,4,\n")
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, generator=gen())
    lines = str(info.value).splitlines()
    assert "3 cells are missing" in lines[0] and "data.missing: drop" in lines[0]
    assert lines[1:] == ["  row 2, column 'b': empty",
                         "  row 4, column 'a': 'NA' (read as missing)",
                         "  row 4, column 'label': empty"]


def test_missing_drop_and_mean(tmp_path):
    path = write(tmp_path / "m.csv", "a,c,label\n1,u,x\n,v,y\n5,,x\n3,u,y\n")
    ds = csv_dataset(path, test=path, categorical=["c"], missing="drop", generator=gen())
    assert ds.feature_names == ["a", "c=u"]  # 'v' was only in a dropped row
    assert ds.x_train.tolist() == [[1, 1], [3, 1]] and ds.y_train.tolist() == [0, 1]
    ds = csv_dataset(path, test=path, categorical=["c"], missing="mean", generator=gen())
    assert ds.x_train[1].tolist() == [3, 0, 1]  # mean of 1, 5, 3
    assert ds.x_train[2].tolist() == [5, 2 / 3, 1 / 3]  # category frequencies
    assert ds.preprocessing["fill_values"] == [3, 2 / 3, 1 / 3]
    labelless = write(tmp_path / "l.csv", "a,label\n1,x\n2,\n3,y\n")
    with pytest.raises(ValueError, match="label has no mean"):
        csv_dataset(labelless, test=labelless, missing="mean", generator=gen())


# ---------------------------------------------------------------- the shared cases


def test_case_unnamed_index_column_is_refused(case):
    folder = case("unnamed-index-column")
    with pytest.raises(ValueError, match=r'column 1 has no name \(""\).*data.exclude: \[""\]'):
        csv_dataset(folder / "data.csv", test_fraction=0.25, generator=gen())
    for way in ({"exclude": [""]}, {"features": ["x1", "x2"]}):
        ds = csv_dataset(folder / "data.csv", test_fraction=0.25, **way, generator=gen())
        assert ds.feature_names == ["x1", "x2"]


def test_pandas_unnamed_column_is_refused_too(tmp_path):
    path = write(tmp_path / "p.csv", "Unnamed: 0,a,label\n0,1,x\n1,2,y\n")
    with pytest.raises(ValueError, match=r'column 1 has no name \("Unnamed: 0"\)'):
        csv_dataset(path, test=path, generator=gen())


def test_case_single_class_is_refused(case):
    folder = case("single-class")
    with pytest.raises(ValueError, match=r"data\.csv: label 'label' has one class \('1'\)"):
        csv_dataset(folder / "data.csv", test_fraction=0.25, generator=gen())


def test_case_label_only_in_test_names_value_column_and_file(case):
    folder = case("label-only-in-test")
    with pytest.raises(ValueError, match=r"test\.csv: label 'label' has value\(s\) '3' that the "
                                         r"training rows never have \(row 22\)"):
        csv_dataset(folder / "train.csv", test=folder / "test.csv", generator=gen())


def test_case_regression_target(case):
    folder = case("regression-target")
    with pytest.raises(ValueError, match=r"label 'y' has 22\d distinct values; for a numeric "
                                         r"target set data.task: regression"):
        csv_dataset(folder / "data.csv", test_fraction=0.25, label="y", generator=gen())
    ds = csv_dataset(folder / "data.csv", test_fraction=0.25, label="y", task="regression",
                     generator=gen())
    assert ds.y_train.shape == (225, 1) and ds.num_outputs == 1 and ds.target_names == ["y"]


def test_case_data_changed_after_training(case):
    folder = case("data-changed-after-training")
    data = folder / "data.csv"
    shutil.copy(folder / "data.orig.csv", data)
    ds = csv_dataset(data, test_fraction=0.25, generator=gen())
    assert ds.data_files == {str(data.absolute()): file_sha256(data)}
    assert changed_files(ds.data_files) == []
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[0], *sorted(lines[1:])]) + "\n")  # same rows, re-ordered
    assert changed_files(ds.data_files) == [str(data.absolute())]
    data.unlink()
    assert changed_files(ds.data_files) == [str(data.absolute())]


@pytest.mark.parametrize("name, message", [
    ("unnamed-index-column", 'column 1 has no name ("")'),
    ("single-class", "label 'label' has one class ('1')"),
    ("label-only-in-test", "test.csv: label 'label' has value(s) '3'"),
    ("regression-target", "for a numeric target set data.task: regression"),
])
def test_cli_refuses_each_case_with_exit_2_and_writes_nothing(case, name, message):
    from tests.helpers import invoke

    folder = case(name)
    result = invoke("train", folder / "cfg.yaml", f"runs_dir={folder / 'runs'}")
    assert result.exit_code == 2
    assert result.output.startswith("error: data: ") and message in result.output
    assert not (folder / "runs").exists()


def test_cli_train_lists_every_bad_cell_not_only_the_count(tmp_path):
    from tests.helpers import invoke

    rows = ["a,b,label"] + [f"{'oops' if i % 3 == 0 else i},1,{'xy'[i % 2]}" for i in range(40)]
    write(tmp_path / "bad.csv", "\n".join(rows) + "\n")
    config = tmp_path / "cfg.yaml"
    config.write_text("data: {type: csv, train: bad.csv, test_fraction: 0.25, label: label}\n"
                      "model: [{type: linear, out_features: 2}]\nloss: cross_entropy\n"
                      "optimizer: {type: sgd, lr: 0.1}\n"
                      f"runs_dir: {tmp_path / 'runs'}\n")
    result = invoke("train", config)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert "14 cells are not finite numbers" in lines[0]
    assert lines[1] == "error:   row 2, column 'a': 'oops' is not a number"
    assert len(lines) == 12 and lines[-1] == "error:   ... and 4 more"
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- preprocessing and parquet


def test_encode_table_repeats_training_on_new_files(tmp_path):
    train = write(tmp_path / "t.csv", "id,size,color,label\n1,1,red,a\n2,,blue,b\n3,3,red,a\n")
    ds = csv_dataset(train, test=train, exclude=["id"], categorical=["color"], missing="mean",
                     generator=gen())
    prep = json.loads(json.dumps(ds.preprocessing))  # plain data: survives JSON (and checkpoints)
    assert torch.equal(encode_table(train, prep), ds.x_train)
    new = write(tmp_path / "new.csv", "color,other,size\nblue,zz,\nred,zz,7\n")  # reordered
    assert encode_table(new, prep).tolist() == [[2, 1, 0], [7, 0, 1]]
    x, y = encode_labelled(train, prep)
    assert torch.equal(x, ds.x_train) and torch.equal(y, ds.y_train)
    assert torch.equal(read_labels(train, prep), ds.y_train)
    table = pa.table({"size": [1.0], "color": ["red"]})  # in memory too
    assert encode_table(table, prep).tolist() == [[1, 0, 1]]
    with pytest.raises(ValueError, match="has no feature column 'color'"):
        encode_table(write(tmp_path / "short.csv", "size\n1\n"), prep)


def test_a_file_with_another_delimiter_is_named_as_such(tmp_path):
    train = write(tmp_path / "t.csv", "a;b;label\n1;2;x\n3;4;y\n")
    ds = csv_dataset(train, test=train, delimiter=";", generator=gen())
    commas = write(tmp_path / "new.csv", "b,a\n1,2\n")
    with pytest.raises(ValueError, match=r"has no feature column 'a'.*its header reads as the one "
                                         r"column 'b,a'.*delimiter ';' \(its data.delimiter\)"):
        encode_table(commas, ds.preprocessing)
    with pytest.raises(ValueError) as info:  # a plain missing column: no hint
        encode_table(write(tmp_path / "short.csv", "b\n1\n"), ds.preprocessing)
    assert "delimiter" not in str(info.value)


def test_parquet_gives_the_same_data_set(tmp_path, iris_like):
    table = pa_csv.read_csv(iris_like)
    pq.write_table(table, tmp_path / "train.parquet")
    a = csv_dataset(iris_like, test_fraction=0.25, generator=gen())
    b = parquet_dataset(tmp_path / "train.parquet", test_fraction=0.25, generator=gen())
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.class_names == b.class_names and a.feature_names == b.feature_names
    assert torch.equal(encode_table(tmp_path / "train.parquet", a.preprocessing),
                       encode_table(iris_like, a.preprocessing))
    assert make_dataset("parquet", {"train": tmp_path / "train.parquet", "test_fraction": 0.5},
                        0).num_classes == 2


def test_damaged_parquet_is_one_line(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(ValueError, match=r"bad\.parquet is not a readable Parquet file") as info:
        parquet_dataset(path, test_fraction=0.5, generator=gen())
    assert "\n" not in str(info.value)


def test_na_spellings_and_nan_are_missing(tmp_path):
    path = write(tmp_path / "na.csv", "a,b,label\n1,NA,x\nnan,2,y\n3,N/A,x\n4,5,y\n6,7,x\n")
    ds = csv_dataset(path, test=path, missing="drop", generator=gen())
    assert ds.x_train.tolist() == [[4, 5], [6, 7]]
    pq.write_table(pa.table({"a": [1.0, float("nan"), 3.0], "label": ["x", "y", "x"]}),
                   tmp_path / "nan.parquet")
    with pytest.raises(ValueError, match=r"nan\.parquet, row 2, column 'a': 'NaN' \(read as m"):
        parquet_dataset(tmp_path / "nan.parquet", test_fraction=0.5, generator=gen())


def test_a_header_without_rows(tmp_path):
    path = write(tmp_path / "h.csv", "a,label\n")
    with pytest.raises(ValueError, match=r"h\.csv has a header but no data rows"):
        csv_dataset(path, test_fraction=0.5, generator=gen())
    with pytest.raises(ValueError, match=r"e\.csv is empty"):
        csv_dataset(write(tmp_path / "e.csv", ""), test_fraction=0.5, generator=gen())


def test_numeric_classes_match_by_value(tmp_path):
    train = write(tmp_path / "train.csv", "a,label\n1,1\n2,2\n3,10\n")
    test = write(tmp_path / "test.csv", "a,label\n4,1.0\n5,10\n")
    ds = csv_dataset(train, test=test, generator=gen())
    assert ds.class_names == ["1", "2", "10"] and ds.y_test.tolist() == [0, 2]


def test_predict_input_with_a_missing_cell(tmp_path):
    train = write(tmp_path / "t.csv", "a,b,label\n1,2,x\n,4,y\n5,6,x\n7,8,y\n")
    new = write(tmp_path / "new.csv", "a,b\n1,\n")
    ds = csv_dataset(train, test=train, missing="drop", generator=gen())
    with pytest.raises(ValueError, match="row 2, column 'b': empty; fill them: predictions keep"):
        encode_table(new, ds.preprocessing)
    ds = csv_dataset(train, test=train, missing="mean", generator=gen())
    assert encode_table(new, ds.preprocessing).tolist() == [[1, 5]]  # b: mean of 2, 4, 6, 8


def _table_config(tmp_path: Path, rows: str, data: str, loss: str = "mse") -> Path:
    write(tmp_path / "t.csv", rows)
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data: {{type: csv, train: t.csv, test_fraction: 0.5, {data}}}\n"
                      "model: [{type: linear, out_features: 1}]\n"
                      f"loss: {loss}\noptimizer: {{type: sgd, lr: 0.1}}\n"
                      "train: {batch_size: 2}\n"
                      f"runs_dir: {tmp_path / 'runs'}\n")
    return config


def test_loss_targets_is_refused_for_regression(tmp_path):
    from tests.helpers import invoke

    rows = "a,y\n" + "".join(f"{i},{i * 2}\n" for i in range(6))
    config = _table_config(tmp_path, rows, "label: y, task: regression",
                           "{type: huber, targets: signed}")
    result = invoke("train", config)
    assert result.exit_code == 2, result.output
    assert "loss.targets: only used for classification" in result.output
    assert not (tmp_path / "runs").exists()
    config.write_text(config.read_text().replace("{type: huber, targets: signed}", "huber"))
    assert invoke("train", config, "train.epochs=1").exit_code == 0  # the default is no problem


def test_a_text_label_under_regression_is_named_as_the_label(tmp_path):
    path = write(tmp_path / "t.csv", "a,y\n1,A\n2,B\n3,A\n")
    with pytest.raises(ValueError, match="label 'y' holds text .*regression target must be numb"):
        csv_dataset(path, test=path, label="y", task="regression", generator=gen())


def test_exclude_naming_the_label_is_refused(iris_like):
    with pytest.raises(ValueError, match="data.exclude lists the label column 'label'"):
        csv_dataset(iris_like, test=iris_like, exclude=["label"], generator=gen())


def test_applying_a_run_advises_fixing_the_file_not_the_config(tmp_path):
    train = write(tmp_path / "t.csv", "a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    ds = csv_dataset(train, test=train, generator=gen())
    new = write(tmp_path / "new.csv", "a,b\n1,oops\n2,3\n4,\n")
    with pytest.raises(ValueError) as info:
        encode_table(new, ds.preprocessing)
    assert "trained with numbers in columns a, b" in str(info.value)
    assert "data.categorical" not in str(info.value)
    with pytest.raises(ValueError, match="trained with missing: error") as info:
        encode_table(write(new, "a,b\n1,\n"), ds.preprocessing)
    assert "data.missing" not in str(info.value)
    with pytest.raises(ValueError, match="holds text .*trained with it as numbers; fix"):
        encode_table(write(new, "a,b\n1,p\n2,q\n"), ds.preprocessing)
    with pytest.raises(FileNotFoundError, match="file not found: .*nope.csv; check") as info:
        encode_labelled(tmp_path / "nope.csv", ds.preprocessing)
    assert "config" not in str(info.value)


def test_a_spelled_missing_cell_is_shown_as_written(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,label\n1,NA,x\n,2,y\n3,4,x\n")
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, generator=gen())
    lines = str(info.value).splitlines()
    assert lines[1:] == ["  row 2, column 'b': 'NA' (read as missing)",
                         "  row 3, column 'a': empty"]


# ---------------------------------------------------------------- what a table file is


@pytest.mark.parametrize("compression, name", [("gzip", "t.csv"), ("bz2", "t.csv"),
                                               ("xz", "t.data"), ("zstd", "t"),
                                               (None, "t.csv.gz")])
def test_a_tables_compression_is_told_by_content_not_its_name(tmp_path, iris_like, compression,
                                                              name):
    import bz2
    import gzip
    import lzma

    raw, path = iris_like.read_bytes(), tmp_path / name
    if compression == "zstd":
        with pa.output_stream(str(path), compression="zstd") as f:
            f.write(raw)
    else:
        path.write_bytes({"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress,
                          None: bytes}[compression](raw))
    a = csv_dataset(iris_like, test_fraction=0.25, generator=gen())
    b = csv_dataset(path, test_fraction=0.25, generator=gen())
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert torch.equal(encode_table(path, a.preprocessing), encode_table(iris_like,
                                                                          a.preprocessing))


def test_an_image_or_archive_given_as_a_table_says_what_it_is(tmp_path):
    from PIL import Image

    Image.new("L", (2, 2)).save(tmp_path / "x.csv", format="PNG")
    with pytest.raises(ValueError, match=r"x\.csv is a PNG image, not a table; give a CSV or P"):
        csv_dataset(tmp_path / "x.csv", test_fraction=0.5, generator=gen())


def test_quoted_values_spanning_lines_across_parse_blocks(tmp_path, monkeypatch):
    """pyarrow cut a quoted multi-line value at a block boundary; the file was refused with
    "0 rows do not have one field per column"."""
    from minidl_cli.data import table_io

    monkeypatch.setattr(table_io, "BLOCK_SIZE", 1 << 10)  # 1 KiB blocks: many boundaries
    lines = ["a,note,y"] + [f'{i % 7},"first line\nsecond line {i}",{"pq"[i % 2]}'
                            for i in range(300)]
    path = write(tmp_path / "notes.csv", "\n".join(lines) + "\n")
    ds = csv_dataset(path, test_fraction=0.25, label="y", exclude=["note"], generator=gen())
    assert len(ds.x_train) + len(ds.x_test) == 300
    assert sorted(torch.cat([ds.x_train, ds.x_test])[:, 0].tolist()) == sorted(
        float(i % 7) for i in range(300))
    write(path, path.read_text().replace("second line 250\",p", "second line 250\""))
    with pytest.raises(ValueError, match=r"1 row does not have one field per column: line \d+ "):
        csv_dataset(path, test_fraction=0.25, label="y", exclude=["note"], generator=gen())


def test_pandas_saved_index_in_parquet_is_refused_like_an_unnamed_csv_column(case):
    folder = case("parquet-saved-index")
    with pytest.raises(ValueError, match=r"column '__index_level_0__' is the row index pandas "
                                         r"saved .* data.exclude: \[__index_level_0__\]"):
        parquet_dataset(folder / "train.parquet", test_fraction=0.25, label="y", generator=gen())
    ds = parquet_dataset(folder / "train.parquet", test_fraction=0.25, label="y",
                         exclude=["__index_level_0__"], generator=gen())
    assert ds.feature_names == ["a", "b"]
    assert encode_table(folder / "new.parquet", ds.preprocessing).shape == (
        pq.read_metadata(folder / "new.parquet").num_rows, 2)


def test_booleans_read_alike_from_csv_and_parquet(tmp_path):
    rows = ["a,flag,y"] + [f"{i},{['True', 'False'][i % 2]},{['pos', 'neg'][i % 3 == 0]}"
                           for i in range(12)]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    ds = csv_dataset(path, test=path, label="y", generator=gen())
    assert ds.x_train[:, 1].tolist() == [1.0, 0.0] * 6  # True/False: 1/0, as a Parquet bool
    new = pa.table({"a": [1.0, 2.0], "flag": [True, False]})
    assert encode_table(new, ds.preprocessing)[:, 1].tolist() == [1.0, 0.0]
    ds = csv_dataset(path, test=path, label="y", categorical=["flag"], generator=gen())
    assert encode_table(new, ds.preprocessing).tolist() == \
        encode_table(write(tmp_path / "new.csv", "a,flag\n1,true\n2,FALSE\n"),
                     ds.preprocessing).tolist() == [[1, 0, 1], [2, 1, 0]]
    labels = write(tmp_path / "l.csv", "a,y\n" + "".join(f"{i},{i % 2 == 0}\n" for i in range(8)))
    ds = csv_dataset(labels, test=labels, label="y", generator=gen())
    assert ds.class_names == ["False", "True"]
    x, y = encode_labelled(pa.table({"a": [0.0, 1.0], "y": [True, False]}), ds.preprocessing)
    assert y.tolist() == [1, 0]
    with pytest.raises(ValueError, match="label 'y' has value.* '1'"):  # a bool is not 1
        encode_labelled(write(tmp_path / "n.csv", "a,y\n0,1\n"), ds.preprocessing)


def test_a_feature_mixing_true_false_with_1_0_reads_as_1_0(tmp_path):
    """True/False alone and 1/0 alone were numbers, both together "'True' is not a number";
    a value other than 0 or 1 beside them is still refused."""
    flags = ["True", "False", "1", "0"]
    rows = ["a,flag,y"] + [f"{i},{flags[i % 4]},{['pos', 'neg'][i % 3 == 0]}" for i in range(12)]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    ds = csv_dataset(path, test=path, label="y", generator=gen())
    assert ds.x_train[:, 1].tolist() == [1.0, 0.0] * 6
    assert encode_table(write(tmp_path / "new.csv", "a,flag\n1,TRUE\n2,0\n"),
                        ds.preprocessing)[:, 1].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="'True' is not a number"):
        encode_table(write(tmp_path / "bad.csv", "a,flag\n1,True\n2,2.5\n"), ds.preprocessing)


def test_a_repeated_header_name_matters_only_in_a_column_minidl_reads(tmp_path):
    rows = ["a,b,y,note,note"] + [f"{i},{i % 3},{'pq'[i % 2]},x,z" for i in range(10)]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    ds = csv_dataset(path, test=path, label="y", features=["a", "b"], generator=gen())
    new = write(tmp_path / "new.csv", "a,b,comment,comment\n1,2,x,y\n")
    assert encode_table(new, ds.preprocessing).tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="header names column 'note' twice; rename one"):
        csv_dataset(path, test=path, label="y", generator=gen())  # every other column: note too
    with pytest.raises(ValueError, match="header names column 'b' twice"):
        encode_table(write(new, "a,b,b\n1,2,3\n"), ds.preprocessing)


def test_na_as_a_category_or_class_can_be_kept(tmp_path):
    rows = ["a,y"] + [f"{i},{['NA', 'EU', 'null'][i % 3]}" for i in range(9)]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, label="y", generator=gen())
    first, second = str(info.value).splitlines()[:2]
    assert "6 cells are missing" in first and "data.missing_values" in first
    assert second == "  row 2, column 'y': 'NA' (read as missing)"  # not "empty"
    ds = csv_dataset(path, test=path, label="y", missing_values=[""], generator=gen())
    assert ds.class_names == ["EU", "NA", "null"]
    x, y = encode_labelled(write(tmp_path / "new.csv", "a,y\n1,NA\n"), ds.preprocessing)
    assert y.tolist() == [1]
    with pytest.raises(ValueError, match=r"row 2, column 'y': empty"):
        csv_dataset(write(path, "a,y\n1,\n2,EU\n3,NA\n"), test=path, label="y",
                    missing_values=[], generator=gen())


def test_a_rare_value_the_split_puts_only_in_test_blames_the_split(tmp_path):
    rows = ["a,color,y"] + [f"{i},{'purple' if i == 7 else 'rb'[i % 2]},{'pq'[i % 2]}"
                            for i in range(20)]
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    labels = write(tmp_path / "l.csv", "a,y\n" + "".join(
        f"{i},{'rare' if i == 7 else 'pq'[i % 2]}\n" for i in range(20)))
    for data, options, what in ((path, {"categorical": ["color"]}, "column 'color' = 'purple'"),
                                (labels, {}, "label 'y' = 'rare'")):
        messages = []
        for seed in range(8):
            try:
                csv_dataset(data, test_fraction=0.25, label="y", generator=gen(seed), **options)
            except ValueError as e:
                messages.append(str(e))
        assert 0 < len(messages) < 8  # some seeds put the one rare row into the test part
        for message in messages:
            assert f"the file is fine, but the seeded data.test_fraction 0.25 split put the " \
                   f"only row with {what} into the test part" in message
            assert "another seed" in message and "data.test" in message
            assert "remove those rows, or" not in message


def test_a_file_read_with_the_wrong_delimiter_says_which_to_set(tmp_path):
    path = write(tmp_path / "t.tsv", "a\tb\ty\n1\t2\tp\n3\t4\tq\n")
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, label="y", generator=gen())
    assert "available columns: 'a\\tb\\ty'; its header reads as the one column" in \
        str(info.value)  # the tabs shown, not printed as spaces
    assert 'set data.delimiter: "\\t"' in str(info.value)
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, label="y", delimiter="\\t", generator=gen())
    assert "must be one character, got '\\\\t' (a tab is written delimiter: \"\\t\" in YAML" \
        in str(info.value)
    assert csv_dataset(path, test=path, label="y", delimiter="\t", generator=gen()).num_classes \
        == 2


def test_bad_and_missing_cells_are_reported_together_as_written(tmp_path):
    rows = ["a,y"] + [f"{i},{i * 2}" for i in range(8)]
    rows[3], rows[5], rows[7] = "2,nan", "4,inf", "6,"
    path = write(tmp_path / "t.csv", "\n".join(rows) + "\n")
    with pytest.raises(ValueError) as info:
        csv_dataset(path, test=path, label="y", task="regression", generator=gen())
    lines = str(info.value).splitlines()
    assert "3 cells are not finite numbers or are missing" in lines[0]
    assert lines[1:] == ["  row 4, column 'y': 'nan' (read as missing)",
                         "  row 6, column 'y': 'inf' is not a finite number",
                         "  row 8, column 'y': empty"]
