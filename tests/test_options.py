"""advjax.options, alone: value parsers, defaults, rules between options, the TOML reader.

Unit tests of the options table (no sweep runs): the fast tier. The CLI's end-to-end
refusals are in test_bad_input.py and test_sweep.py.
"""

import dataclasses

import pytest

from advjax.options import (
    BY_NAME,
    GRID_AXES,
    OPTIONS,
    ConfigError,
    SweepConfig,
    build_parser,
    every_from_text,
    from_dict,
    load_toml,
    parse_args,
    parse_bytes,
    schedule_boundaries,
)


def test_every_option_is_a_field_a_flag_and_has_help():
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    assert {f.name for f in dataclasses.fields(SweepConfig)} == set(names)
    flags = {a.dest for a in build_parser()._actions}
    assert set(names) <= flags
    assert all(o.help for o in OPTIONS)


def test_defaults_resolve_per_dataset():
    mnist = from_dict({"dataset": "mnist"}).resolve()
    assert (mnist.lr, mnist.batch_size, mnist.max_steps, mnist.fix_data) == (0.1, 32, 20_000, True)
    assert (mnist.phase1_lr, mnist.phase1_max_steps) == (0.1, 20_000)
    cifar = from_dict({"dataset": "cifar10", "cifar_path": "/nowhere"}).resolve()
    assert cifar.batch_size == 128
    g = from_dict({"dataset": "gaussians", "lr": "0.05"}).resolve()
    assert (g.lr, g.batch_size, g.max_steps, g.fix_data, g.phase1_lr) == (0.05, 0, 100_000, False, 0.05)


def test_a_grid_axis_leaves_phase_one_to_each_point():
    cfg = from_dict({"dataset": "spirals", "lr": "0.01,0.1"}).resolve()
    assert cfg.axes() == {"lr": (0.01, 0.1)} and cfg.phase1_lr is None
    assert cfg.points() == [{"lr": 0.01}, {"lr": 0.1}]
    assert [cfg.point(p).phase1_lr for p in cfg.points()] == [0.01, 0.1]
    assert "lr" in GRID_AXES


@pytest.mark.parametrize("values, flag", [
    ({"lr": "-1"}, "--lr"),
    ({"lr": "nan"}, "--lr"),
    ({"seeds": "0"}, "--seeds"),
    ({"widths": "10,x"}, "--widths"),
    ({"dataset": "imagenet"}, "--dataset"),
    ({"noise": "0.1"}, "--noise"),  # applies to circles only
    ({"momentum": "0.5,0.9", "lr": "0.1,1"}, None),  # two axes are allowed
    ({"seed": str(2**32 - 1), "seeds": "2"}, "--seeds"),
    ({"bogus": "1"}, "--bogus"),
    ({"experiments": "teacher_features"}, "--experiments"),
    ({"experiments": "freeze_2"}, "--experiments"),  # depth 1 has one feature layer
])
def test_bad_values_name_their_flag(values, flag):
    if flag is None:
        from_dict(values)
        return
    with pytest.raises(ConfigError) as e:
        from_dict(values)
    assert e.value.flag == flag and str(e.value).startswith(flag + ": ")
    assert "\n" not in str(e.value)


def test_grid_size_is_capped_by_max_grid():
    with pytest.raises(ConfigError, match="--max-grid"):
        from_dict({"lr": ",".join(str(0.01 * i) for i in range(1, 11)), "seeds": "100", "max_grid": "500"})
    assert from_dict({"lr": "0.01,0.02", "seeds": "100", "max_grid": "500"}).axes() == {"lr": (0.01, 0.02)}


def test_strict_refuses_options_that_do_not_apply_but_a_manifest_reads_back():
    with pytest.raises(ConfigError, match="--noise: applies only"):
        from_dict({"dataset": "gaussians", "noise": 0.3})
    cfg = from_dict({"dataset": "gaussians", "noise": 0.3}, strict=False)
    assert cfg.noise == 0.3


def test_all_experiments_depend_on_depth_and_dataset():
    one = from_dict({"experiments": "all"}).experiments
    deep = from_dict({"experiments": "all", "depth": 3}).experiments
    teacher = from_dict({"experiments": "all", "dataset": "teacher"}).experiments
    assert "freeze_1" in one and "freeze_2" not in one and "freeze_3" in deep
    assert "teacher_features" in teacher and "teacher_features" not in one


def test_size_schedule_and_every_parsers():
    assert parse_bytes("500MB") == 500 * 2**20 and parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert parse_bytes("1000") == 1000
    for bad in ("0", "-1GB", "nanGB", "2EB", "lots"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    assert schedule_boundaries("step:150,250:0.1", 4) == ((600, 1000), 0.1)
    assert schedule_boundaries(None, 4) == ((), 1.0)
    assert every_from_text("500") == ("steps", 500)
    assert every_from_text("5m") == ("seconds", 300.0)
    assert every_from_text("0") is None
    for bad in ("-3", "0s", str(2**40)):
        with pytest.raises(ValueError):
            every_from_text(bad)


def test_flags_override_the_toml_file_and_its_errors_name_it(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('# header\n[sweep]\ndataset = "circles"\nwidths = [10, 20]\nnoise = 0.2\nseeds = 4\n')
    cfg = parse_args(["--config", str(f), "--seeds", "7"])
    assert (cfg.dataset, cfg.widths, cfg.noise, cfg.seeds) == ("circles", (10, 20), 0.2, 7)
    f.write_text('dataset = "circles"\nnoise = -1\n')
    with pytest.raises(ConfigError, match=r"--noise: .*\(in .*s\.toml\)"):
        parse_args(["--config", str(f)])
    f.write_text('seeds = 3\n[sweep]\nseeds = 4\n')
    with pytest.raises(ConfigError, match="both in \\[sweep\\] and at the top"):
        load_toml(str(f))
    f.write_text("seeds = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(str(f))
    with pytest.raises(ConfigError, match="no such file"):
        load_toml(str(tmp_path / "missing.toml"))


def test_results_config_leaves_out_runtime_fields():
    cfg = from_dict({"quiet": True, "seeds": 3}).resolve()
    rc = cfg.results_config()
    assert "seeds" in rc and "quiet" not in rc
    assert all(not BY_NAME[k].runtime for k in rc)


@pytest.mark.parametrize("fields, flag", [
    ({"lr": -1.0}, "--lr"), ({"lr": float("nan")}, "--lr"), ({"batch_size": -3}, "--batch-size"),
    ({"max_steps": 2**40}, "--max-steps"), ({"n_test": 0}, "--n-test"), ({"random_fraction": 1.5}, "--random-fraction"),
    ({"momentum": 1.5}, "--momentum"), ({"widths": (10, 10)}, "--widths"), ({"seed": -1}, "--seed"),
    ({"seeds": 0}, "--seeds"), ({"noise": 0.1}, "--noise"),
])
def test_a_config_built_in_python_meets_the_clis_rules_before_anything_is_written(fields, flag, tmp_path):
    from advjax import run_sweep

    with pytest.raises(ConfigError) as e:
        run_sweep(SweepConfig(**fields), str(tmp_path / "o"))
    assert e.value.flag == flag
    assert not (tmp_path / "o").exists()


def test_a_valid_config_built_in_python_is_the_clis_config():
    from advjax.options import as_config

    for fields in ({}, {"widths": (5, 7), "lr": (0.1, 0.2)}, {"dataset": "mnist", "experiments": ("baseline",)},
                   {"dataset": "mnist", "fix_data": False, "batch_size": 0}, {"lr_schedule": "step:10:0.1"}):
        assert as_config(SweepConfig(**fields)) == SweepConfig(**fields)
    assert as_config(SweepConfig(widths=10)).widths == (10,)


def test_check_every_beyond_every_step_cap_is_refused():
    with pytest.raises(ConfigError, match=r"^--check-every: 1000000 is beyond the step cap 200"):
        from_dict({"check_every": 10**6, "max_steps": 200})
    with pytest.raises(ConfigError, match="beyond the step cap 20,000"):
        from_dict({"dataset": "mnist", "check_every": 30_000})
    assert from_dict({"check_every": 300, "max_steps": "200,400"}).check_every == 300  # within one point's cap
    assert from_dict({"check_every": 300, "max_steps": 200, "phase1_max_steps": 300}).check_every == 300


@pytest.mark.parametrize("field,value,cli", [("seed", -1, ["--seed", "-1"]), ("seeds", 0, ["--seeds", "0"]),
                                             ("lr", float("nan"), ["--lr", "nan"]), ("widths", [], ["--widths", ""]),
                                             ("momentum", 1.5, ["--momentum", "1.5"])])
def test_sweepconfig_construction_applies_the_clis_value_rules(field, value, cli, tmp_path, capsys):
    """SweepConfig(...) itself raises the CLI's line (issue 27: SweepConfig(seeds=0) ran
    until it had written manifest.json and .lock)."""
    from advjax.options import ConfigError, SweepConfig
    from advjax.sweep import main

    with pytest.raises(ConfigError) as e:
        SweepConfig(**{field: value})
    assert main([*cli, "--out", str(tmp_path / "o")]) == 2
    cli_line = capsys.readouterr().err.strip().removeprefix("advjax.sweep: error: ")
    flag = cli_line.split(":")[0]
    assert str(e.value).startswith(flag + ":")  # the same flag
    assert str(e.value).split(" is not ")[1] == cli_line.split(" is not ")[1]  # and what is allowed
    assert not (tmp_path / "o").exists()


def test_sweepconfig_keeps_the_parsed_values():
    from advjax.options import SweepConfig

    cfg = SweepConfig(widths=10, lr="0.1", experiments="1,2")
    assert cfg.widths == (10,) and cfg.lr == 0.1 and cfg.experiments == ("baseline", "adversarial")
    assert SweepConfig().resolve().batch_size == 0 and SweepConfig().resolve().to_dict()["batch_size"] == "full"
