import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from asr.cli.app import SCHEMA_MATCHING_WARNING
from asr.config import Config, register, to_options
from asr.data.options import AugmentOptions

CONF = Path(__file__).resolve().parent.parent / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _compose(overrides: list[str]) -> Config:
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_object(cfg)


def test_all_presets_are_there():
    assert {"demo", "ldc93s1_seed", "ldc93s1"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_to_the_schema(preset):
    needs = {"speech": ["data.root=/corpus"], "speech_transfer": ["data.root=/corpus", "trainer.init_from=/base"]}
    needs["fillets_nl_transfer"] = ["trainer.init_from=/base"]
    needs["speech_streaming"] = ["data.root=/corpus"]
    cfg = _compose([f"experiment={preset}", *needs.get(preset, [])])
    assert isinstance(cfg, Config)
    assert cfg.name == preset
    assert Path(cfg.data.root).is_absolute()


def test_default_is_the_demo_on_the_embedded_corpus():
    cfg = _compose([])
    assert cfg.name == "demo"
    assert Path(cfg.data.root) == CONF.parent / "data"
    assert (Path(cfg.data.root) / cfg.data.train).is_file()


def test_seed_preset_is_the_article_recipe():
    cfg = _compose(["experiment=ldc93s1_seed"])
    assert (cfg.model.num_layers, cfg.model.units, cfg.model.bidirectional) == (1, 50, False)
    assert cfg.model.logits_init_stddev == 0.1
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum) == ("sgd", 0.005, 0.9)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (2, 400)
    assert (cfg.features.numcep, cfg.features.normalize, cfg.features.sample_rate) == (13, "utterance_scalar", 16000)


def test_shared_data_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_SHARED_DATA", str(tmp_path))
    assert _compose(["experiment=ldc93s1"]).data.root == f"{tmp_path}/ldc93s1"
    assert _compose(["experiment=ldc93s1", "data.root=/elsewhere"]).data.audio_root == "/elsewhere"


def test_overrides_reach_the_typed_config():
    cfg = _compose(
        [
            "seed=5",
            "trainer.epochs=3",
            "trainer.batch_size=7",
            "model.num_layers=3",
            "model.units=16",
            "model.bidirectional=false",
        ]
    )
    assert (cfg.seed, cfg.trainer.epochs, cfg.trainer.batch_size) == (5, 3, 7)
    assert (cfg.model.num_layers, cfg.model.units, cfg.model.bidirectional) == (3, 16, False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.unitz=3", "unitz"),
        ("trainer.epoch=3", "epoch"),
        ("model.units=many", "units"),
        ("experiment=nope", "nope"),
    ],
)
def test_mistakes_fail_at_start_naming_the_key(override, message):
    with pytest.raises(ConfigCompositionException) as e:
        _compose([override])
    assert message in str(e.value) + str(e.value.__cause__)


def test_search_preset_declares_an_optuna_study_that_survives_failed_trials():
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["experiment=demo_search", "hydra/launcher=joblib"],
            return_hydra_config=True,
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler._target_.endswith("TPESampler")
    assert str(sweeper.direction) in ("minimize", "Direction.minimize") and sweeper.max_failure_rate == 1.0
    assert set(sweeper.params) == {"optimizer.lr", "model.units", "model.num_layers", "model.dropout"}
    assert sweeper.params["optimizer.lr"].startswith("tag(log, interval(")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.callbacks.record_status._target_ == "asr.cli.callbacks.RecordStatus"
    assert cfg.trainer.epochs == 12 and cfg.name == "demo_search"


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("trainer.resume=sometimes", "[auto, never]"),
        ("optimizer.schedule=step", "[constant, cosine, plateau]"),
        ("optimizer.name=adagrad", "[adam, adamw, sgd]"),
        ("data.format=tsv", "[auto, dir, jsonl, csv, fsdd, librispeech, commonvoice]"),
        ("data.on_error=ignore", "[skip, raise]"),
        ("features.normalize=mean", "[utterance, utterance_scalar, global, both, none]"),
        ("lm.kind=words", "[char, word]"),
    ],
)
def test_unknown_choices_fail_at_compose_time_listing_the_allowed_values(override, allowed):
    with pytest.raises(ConfigCompositionException) as e:
        _compose([override])
    cause = str(e.value.__cause__)
    assert f"expected one of {allowed}" in cause and override.split("=")[0] in cause


def test_choices_and_off_values_arrive_typed():
    options = to_options(
        _compose(["data.on_error=raise", "features.normalize=global", "trainer.patience=null", "trainer.threads=2"])
    )
    assert options.data.on_error == "raise" and options.features.normalize == "global"
    assert options.trainer.patience is None and options.trainer.threads == 2
    assert options.trainer.stop_at_val_ler is None and options.optimizer.clipnorm == 1.0  # demo preset


def test_retired_keys_fail_at_compose_time_naming_the_key():
    for old in ("data.speeds=[1.0,0.9]", "model.time_masks=5", "optimizer.warmup_epochs=0.1"):
        with pytest.raises(ConfigCompositionException) as e:
            _compose([old])
        assert old.split("=")[0].split(".")[1] in str(e.value.__cause__)  # docs/upgrading.md names the new key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr must be positive"),
        ("model.units=0", "model.num_layers and model.units must be >= 1"),
        ("optimizer.warmup_ratio=1", "optimizer.warmup_ratio is a share of all training steps"),
        ("augment.speeds=[1.0,0]", "augment.speeds must be positive factors"),
        ("trainer.epochs=0", "trainer.epochs and trainer.batch_size must be >= 1"),
        ("features.deltas=3", "features.deltas must be 0, 1 or 2"),
        ("lm.order=-1", "lm.order must be 0 \\(no language model\\) or >= 2"),
        ("lm.order=1", "lm.order must be 0 \\(no language model\\) or >= 2"),
        ("lm.word_order=1", "lm.word_order must be >= 2"),
        ("model.lookahead=2", "model.lookahead gives a unidirectional model right context"),  # bidirectional
        ("model.lookahead=-1;model.bidirectional=false", "model.lookahead must be >= 0"),
        ("lm.alphas=[]", "lm.alphas"),
        ("trainer.patience=0", r"trainer.patience must be >= 1 or null \(off\), got 0"),
        ("trainer.stop_at_val_ler=-1", r"trainer.stop_at_val_ler must be >= 0 or null \(off\)"),
        ("data.workers=0", r"data.workers must be >= 1 or null \(one per core\), got 0"),
        ("optimizer.clipnorm=0", r"optimizer.clipnorm must be > 0 or null \(no clipping\)"),
        ("trainer.intermediate_ctc=1.5", r"trainer.intermediate_ctc is the auxiliary loss's weight, in \[0, 1\)"),
        (
            "trainer.intermediate_ctc=0.3;trainer.intermediate_ctc_layer=2",
            r"trainer.intermediate_ctc_layer must name a layer below the top one \(1 to 1\), got 2",
        ),
    ],
)
def test_bad_values_fail_once_at_the_boundary_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        to_options(_compose(override.split(";")))  # ";" between overrides


def test_empty_valid_and_test_mean_none():
    options = to_options(_compose(["data.valid=", "data.test="]))
    assert (options.data.valid, options.data.test) == ("", "")


def test_augment_group_turns_the_preset_augmentation_off():
    options = to_options(_compose(["augment=none"]))
    assert options.augment == AugmentOptions()
    assert to_options(_compose([])).augment.speeds[1] == 0.8  # the demo's own


def test_the_speech_recipe_needs_a_corpus_and_fillets_nl_sets_only_its_data():
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue, match="data.root"):
        _compose(["experiment=speech"])
    speech = OmegaConf.structured(_compose(["experiment=speech", "data.root=/corpus"]))
    fillets = OmegaConf.structured(_compose(["experiment=fillets_nl"]))
    assert speech.data.characters == "auto" and not speech.data.fold_accents
    assert speech.data.trim_silence and len(speech.augment.speeds) == 5
    for preset in ("demo", "fsdd", "ldc93s1", "ldc93s1_seed"):  # their numbers stay as they were
        assert not _compose([f"experiment={preset}"]).data.trim_silence
    for cfg in (speech, fillets):
        cfg.name = ""
        for key in ("root", "train", "valid", "test"):
            cfg.data[key] = ""
    assert OmegaConf.to_container(speech) == OmegaConf.to_container(fillets)


def test_the_compose_api_turns_a_config_mistake_into_one_config_error():
    from asr.config import ConfigError, compose
    from asr.errors import user_message

    with pytest.raises(ConfigError, match="Key 'unitz' not in 'ModelConfig'") as e:
        compose(["model.unitz=3"])
    assert "model.unitz" in user_message(e.value)  # what asr-bench prints as its one line
    with pytest.raises(ConfigError, match=r"Invalid value 'step', expected one of \[constant, cosine, plateau\]"):
        compose(["optimizer.schedule=step"])


def _hydra_config(overrides: list[str]):
    warnings.filterwarnings("ignore", message=SCHEMA_MATCHING_WARNING)  # as asr-train does (asr.cli.app)
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_the_slurm_launcher_preset_asks_for_what_a_cluster_job_needs():
    cfg = _hydra_config(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.nodes, launcher.tasks_per_node) == ("gpu", 2, 1)
    assert launcher.cpus_per_task == 8 and launcher.mem_gb == 32 and launcher.timeout_min == 240
    assert launcher.max_num_timeout == 3  # a timed-out job is requeued and resumes from its checkpoint
    assert launcher.setup == [f"source {CONF.parent}/.venv/bin/activate"]
    assert {"gpus_per_node", "gpus_per_task", "account", "qos", "array_parallelism"} <= set(launcher)


def test_the_local_launcher_preset_runs_tasks_on_this_machine():
    launcher = _hydra_config(["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2"]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert launcher.tasks_per_node == 2 and launcher.submitit_folder.endswith("/.submitit/%j")


def test_a_mistyped_launcher_key_fails_at_compose_time():
    with pytest.raises(ConfigCompositionException):
        _hydra_config(["hydra/launcher=submitit_slurm", "hydra.launcher.partitoin=gpu"])


def test_strategy_keys_arrive_typed_and_bad_values_name_the_key():
    options = to_options(_compose(["trainer.strategy=mirrored", "trainer.cpu_devices=2", "data.num_shards=4"]))
    assert (options.trainer.strategy.value, options.trainer.cpu_devices, options.data.num_shards) == ("mirrored", 2, 4)
    with pytest.raises(ConfigCompositionException) as error:
        _compose(["trainer.strategy=horovod"])
    assert "[auto, default, mirrored, multi_worker]" in str(error.value.__cause__)
    with pytest.raises(ValueError, match=r"data.shard must be in \[0, data.num_shards\)"):
        to_options(_compose(["data.shard=4", "data.num_shards=4"]))
    with pytest.raises(ValueError, match="trainer.cpu_devices must be >= 1 or null"):
        to_options(_compose(["trainer.cpu_devices=-2"]))


def test_every_run_records_status_and_prepares_a_shared_optuna_study():
    callbacks = _hydra_config([]).hydra.callbacks
    assert callbacks.prepare_study._target_ == "asr.cli.callbacks.PrepareStudy"


def test_the_speech_recipe_decodes_with_a_character_lm_and_the_english_presets_stay_greedy():
    speech = to_options(_compose(["experiment=fillets_nl"])).lm
    assert (speech.order, speech.beam_width, speech.alphas, speech.betas) == (6, 32, (0.3, 0.5, 0.8), (0.5, 1.0, 2.0))
    for preset in ("demo", "fsdd", "ldc93s1", "ldc93s1_seed"):
        assert to_options(_compose([f"experiment={preset}"])).lm.order == 0
    assert to_options(_compose(["lm=char6", "lm.betas=[1]"])).lm.betas == (1.0,)


def test_a_split_is_a_path_or_a_list_of_paths_with_one_weight_each():
    options = to_options(_compose(["experiment=english"]))
    assert options.data.train == ("speechocean762/train.jsonl", "cathy/train.jsonl")
    assert options.data.test == "speechocean762/test.jsonl" and options.data.train_weights == ()
    assert to_options(_compose(["data.train=[a.jsonl]"])).data.train == "a.jsonl"
    weighted = to_options(_compose(["data.train=[a.jsonl,b.jsonl]", "data.train_weights=[0.5,3]"]))
    assert weighted.data.train_paths == ("a.jsonl", "b.jsonl") and weighted.data.train_weights == (0.5, 3.0)
    with pytest.raises(ValueError, match="data.train_weights needs one factor per data.train path: 2 paths, 1"):
        to_options(_compose(["data.train=[a.jsonl,b.jsonl]", "data.train_weights=[2]"]))
    with pytest.raises(ValueError, match="data.train_weights must be positive factors"):
        to_options(_compose(["data.train=[a.jsonl,b.jsonl]", "data.train_weights=[0,1]"]))
    with pytest.raises(ValueError, match="data.valid must be a path or a list of paths"):
        to_options(_compose(["data.valid=3"]))


def test_the_transfer_presets_need_a_base_model_and_differ_from_speech_only_in_the_base_and_the_rate():
    from dataclasses import replace

    from asr.config import ConfigError, compose

    with pytest.raises(ConfigError, match="trainer.init_from: this preset needs a value here"):
        compose(["experiment=fillets_nl_transfer"])
    tuned = compose(["experiment=fillets_nl_transfer", "trainer.init_from=/base"])
    plain = compose(["experiment=fillets_nl"])
    assert tuned.trainer.init_from == "/base" and tuned.data == plain.data
    for group in ("features", "model", "augment", "lm"):
        assert getattr(tuned, group) == getattr(plain, group)
    assert tuned.trainer == replace(plain.trainer, init_from="/base")  # 26 epochs too: measured, docs/results.md
    assert plain.optimizer.lr == 0.004  # fine-tuning from models/base measured better at a higher rate
    assert tuned.optimizer == replace(plain.optimizer, lr=0.006)


def test_the_streaming_presets_are_their_recipes_unidirectional_with_look_ahead_and_global_statistics():
    from dataclasses import replace

    from asr.config import compose

    pairs = (("demo_streaming", "demo"), ("fillets_nl_streaming", "fillets_nl"), ("base_streaming", "base"))
    for streaming, recipe in pairs:
        stream, plain = compose([f"experiment={streaming}"]), compose([f"experiment={recipe}"])
        assert not stream.model.bidirectional and plain.model.bidirectional
        assert stream.features.normalize == "global" and plain.features.normalize != "global"
        assert stream.model == replace(plain.model, bidirectional=False, lookahead=2)
        assert stream.features == replace(plain.features, normalize=stream.features.normalize)
        for group in ("data", "augment", "optimizer", "lm"):
            assert getattr(stream, group) == getattr(plain, group), group
        epochs = 12 if streaming == "base_streaming" else plain.trainer.epochs  # a third of the base's time
        assert stream.trainer == replace(plain.trainer, epochs=epochs)


def test_a_runs_saved_config_loads_without_the_retired_aliases_it_saved_unset(tmp_path):
    from omegaconf import OmegaConf

    from asr.config import ConfigError, run_options

    saved = OmegaConf.to_container(OmegaConf.structured(_compose(["experiment=demo"])), resolve=True)
    saved["data"]["speeds"] = saved["optimizer"]["warmup_epochs"] = None  # what the schema of 2026-11 wrote
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    assert run_options(tmp_path / "model") == to_options(_compose(["experiment=demo"]))  # from the bundle folder too
    saved["data"]["speeds"] = [1.0, 0.9]  # set: a retired key with a value is named
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    with pytest.raises(ConfigError, match=r"config.yaml: the run's settings do not load .*speeds"):
        run_options(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["experiment=speech"], "data.root"),  # `root: ???` in conf/data/corpus.yaml
        (["features.numcep=???"], "features.numcep"),
        (["experiment=speech", "data.test=???"], "data.root, data.test"),
    ],
)
def test_a_missing_mandatory_value_is_one_config_error_naming_the_key_and_the_fix(overrides, key):
    from asr.config import ConfigError, compose

    with pytest.raises(ConfigError) as e:
        compose(overrides)
    fix = " ".join(f"{k}=<value>" for k in key.split(", "))
    assert str(e.value) == (
        f"{key}: this preset needs a value here; add {fix} to the command (README.md, asr-train --help)"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+trainer.epoch=3", "trainer.epoch: no such key (added with +); did you mean trainer.epochs?"),
        ("+model.unit=64", "model.unit: no such key (added with +); did you mean model.units?"),
        ("+sed=3", "sed: no such key (added with +); did you mean seed?"),
        ("+data.rooot=/corpus", "data.rooot: no such key (added with +); did you mean data.root?"),
        ("+zzzz.qqq=1", "zzzz.qqq: no such key (added with +); README.md's key table lists every key"),
    ],
)
def test_an_unknown_key_added_with_plus_is_refused_naming_the_nearest_known_key(override, message):
    from asr.config import ConfigError, compose

    with pytest.raises(ConfigError) as e:
        compose([override])
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.freeze_layers=2",
            "trainer.freeze_layers=2 holds layers only during the first trainer.freeze_epochs epochs, and "
            "trainer.freeze_epochs is 0; add trainer.freeze_epochs=<epochs> (e.g. 4), or drop trainer.freeze_layers",
        ),
        (
            "trainer.freeze_epochs=4",
            "trainer.freeze_epochs=4 holds the lowest trainer.freeze_layers LSTM layers, and trainer.freeze_layers "
            "is 0; add trainer.freeze_layers=<layers> (e.g. 2), or drop trainer.freeze_epochs",
        ),
    ],
)
def test_freezing_needs_both_the_layers_and_the_epochs(override, message):
    from asr.config import ConfigError, compose

    with pytest.raises(ConfigError) as e:
        compose([override, "trainer.init_from=/base"])
    assert str(e.value) == message


@pytest.mark.parametrize("value", [-1, 31])
def test_average_last_is_a_number_of_final_epochs(value):
    from asr.config import ConfigError, compose

    with pytest.raises(
        ConfigError,
        match=rf"trainer.average_last is a number of final epochs, 0 \(off\) to "
        rf"trainer.epochs=30, got {value}",
    ):
        compose(["experiment=ldc93s1", "trainer.epochs=30", f"trainer.average_last={value}"])


@pytest.mark.parametrize("name", ["base", "base_streaming"])
def test_each_base_preset_is_the_configuration_that_made_its_shipped_model(name):
    import json

    from asr.config import compose
    from asr.training.transfer import read_source

    provenance = json.loads((CONF.parent / "models" / name / "provenance.json").read_text())
    assert provenance["overrides"][0] == f"experiment={name}"
    shipped = compose(provenance["overrides"])  # the run's command line, as models/<name> records it
    assert compose([f"experiment={name}"]) == shipped  # so `make base` (base-streaming) retrains it as shipped
    assert shipped.data.train == ("speechocean762/train.jsonl", "cathy/train.jsonl", "fotaq/train.jsonl")
    bundle = read_source(str(CONF.parent / "models" / name))  # what the shipped weights were trained with
    assert (shipped.features, shipped.model) == (bundle.features, bundle.model)
    assert shipped.model.bidirectional == (name == "base")
