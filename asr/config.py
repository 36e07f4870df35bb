"""The Hydra schema every config file and override is checked against, and its conversion to typed options.

The schema mirrors each stage's frozen options dataclass (same fields, types and defaults; Hydra needs
mutable nodes to merge into), so a mistyped key, a wrong type or an unknown choice fails when the config is
composed. `to_options` turns a composed config into `RunOptions` once, validating every value; nothing past
that point sees a DictConfig.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from asr.data.features import FeatureOptions
from asr.data.options import AugmentOptions, DataOptions
from asr.errors import UserError
from asr.model.options import LMOptions, ModelOptions
from asr.system import SOURCE_ROOT
from asr.training.options import OptimizerOptions, RunOptions, TrainerOptions


def repo_root() -> str:
    """Root of the source checkout if asr runs from one, else the current directory (installed wheel)."""
    if (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "conf").is_dir():
        return str(SOURCE_ROOT)
    return str(Path.cwd())


def _schema_type(hint: Any) -> Any:
    """The annotation OmegaConf understands for a field type: `X | None` -> Optional[X], tuple[X, ...] -> list[X];
    any other union (a path or a list of paths) -> Any, checked by the options class."""
    if isinstance(hint, types.UnionType) and type(None) not in hint.__args__:
        return Any
    if isinstance(hint, types.UnionType):
        return typing.Union[hint.__args__]  # noqa: UP007 (OmegaConf 2.3 reads typing.Union, not X | Y)
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]
    return hint


def _schema(frozen: type, name: str) -> type:
    """A mutable dataclass with the fields, types and defaults of a frozen options class (Hydra merges into
    its nodes)."""
    hints = typing.get_type_hints(frozen)
    fields = []
    for f in dataclasses.fields(frozen):
        default = f.default if f.default is not dataclasses.MISSING else MISSING
        if isinstance(default, tuple):
            fields.append((f.name, _schema_type(hints[f.name]), field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((f.name, _schema_type(hints[f.name]), field(default=default)))
    return dataclasses.make_dataclass(name, fields)


DataConfig = _schema(DataOptions, "DataConfig")
FeaturesConfig = _schema(FeatureOptions, "FeaturesConfig")
AugmentConfig = _schema(AugmentOptions, "AugmentConfig")
ModelConfig = _schema(ModelOptions, "ModelConfig")
OptimizerConfig = _schema(OptimizerOptions, "OptimizerConfig")
TrainerConfig = _schema(TrainerOptions, "TrainerConfig")
LMConfig = _schema(LMOptions, "LMConfig")

GROUPS = ("data", "features", "augment", "model", "optimizer", "trainer", "lm")


@dataclass
class Config:
    """The whole run, as Hydra composes it."""

    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)  # type: ignore[valid-type]
    features: FeaturesConfig = field(default_factory=FeaturesConfig)  # type: ignore[valid-type]
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # type: ignore[valid-type]
    model: ModelConfig = field(default_factory=ModelConfig)  # type: ignore[valid-type]
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # type: ignore[valid-type]
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # type: ignore[valid-type]
    lm: LMConfig = field(default_factory=LMConfig)  # type: ignore[valid-type]


def _plain(group: Any) -> dict:
    """A schema node (dataclass instance) as a dict of its fields."""
    return {f.name: getattr(group, f.name) for f in dataclasses.fields(group)}


def to_options(cfg: Config | DictConfig) -> RunOptions:
    """Typed, validated options of a composed config. Raises ValueError naming the key for a value the schema
    cannot catch (a negative rate...)."""
    if isinstance(cfg, DictConfig):
        check_keys(cfg)
        if required := required_keys(cfg):
            raise ConfigError(
                f"{', '.join(required)}: this preset needs a value here; add "
                f"{' '.join(f'{key}=<value>' for key in required)} to the command (README.md, asr-train --help)"
            )
        cfg = OmegaConf.to_object(cfg)
    groups = {name: _plain(getattr(cfg, name)) for name in GROUPS}
    try:
        return _options(cfg, groups)
    except ValueError as e:  # raised by the options' own checks, each naming its key
        raise ConfigError(str(e)) from None


# A preset marks a key the user must set as `key: ${asr_required:}` (a `???` would not override the schema's
# default when Hydra merges the preset in); a group's own file may use `???` (conf/data/corpus.yaml).
REQUIRED = "${asr_required:}"


def required_keys(cfg: DictConfig) -> list[str]:
    """The keys of the run (name, seed and the groups' keys) still holding REQUIRED or `???`."""

    def unset(node: DictConfig, key: str) -> bool:
        if OmegaConf.is_missing(node, key):
            return True
        return OmegaConf.is_interpolation(node, key) and node._get_node(key)._value() == REQUIRED

    top = [key for key in ("name", "seed") if key in cfg and unset(cfg, key)]
    return top + [f"{group}.{key}" for group in GROUPS for key in cfg[group] if unset(cfg[group], key)]


def known_keys() -> list[str]:
    """Every key of the schema: `name`, `seed` and `<group>.<key>`."""
    return [
        f.name if f.name not in GROUPS else f"{f.name}.{key.name}"
        for f in dataclasses.fields(Config)
        for key in (dataclasses.fields(f.default_factory()) if f.name in GROUPS else [f])
    ]


def check_keys(cfg: DictConfig) -> None:
    """ConfigError for a key the schema does not have (one added with `+`, which Hydra lets into any node), naming
    the nearest known key."""
    known = known_keys()
    unknown = [key for key in cfg if key not in Config.__dataclass_fields__ and key != "hydra"]
    for group in GROUPS:
        if isinstance(cfg.get(group), DictConfig):
            unknown += [f"{group}.{key}" for key in cfg[group] if f"{group}.{key}" not in known]
    if unknown:
        key = str(unknown[0])
        if isinstance(cfg.get(key), DictConfig):  # `+zz.qq=1` adds the node zz holding qq
            key = f"{key}.{next(iter(cfg[key]))}"
        nearest = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {nearest[0]}?" if nearest else "README.md's key table lists every key"
        raise ConfigError(f"{key}: no such key (added with +); {hint}")


class ConfigError(UserError, ValueError):
    """A config value the schema lets through but the options refuse (a negative rate, batch size 0...)."""


def _options(cfg: Config, groups: dict[str, dict]) -> RunOptions:
    """RunOptions of a composed config's name, seed and groups."""
    return RunOptions(
        name=cfg.name,
        seed=cfg.seed,
        data=DataOptions(**groups["data"]),
        features=FeatureOptions(**groups["features"]),
        augment=AugmentOptions(**groups["augment"]),
        model=ModelOptions(**groups["model"]),
        optimizer=OptimizerOptions(**groups["optimizer"]),
        trainer=TrainerOptions(**groups["trainer"]),
        lm=LMOptions(**groups["lm"]),
    )


def register() -> None:
    """Register the schema and the `asr_repo` resolver (idempotent)."""
    if not OmegaConf.has_resolver("asr_repo"):
        OmegaConf.register_new_resolver("asr_repo", repo_root)
    if not OmegaConf.has_resolver("asr_required"):  # reached only where required_keys was not asked first
        OmegaConf.register_new_resolver("asr_required", _required)
    ConfigStore.instance().store(name="schema", node=Config)


def _required() -> None:
    """The asr_required resolver: a key a preset requires was read without a value."""
    raise ConfigError("a key this preset requires has no value (asr-train --help lists the keys)")


def compose(overrides: Sequence[str] = ()) -> RunOptions:
    """The options of `asr-train <overrides>` without running anything (for notebooks and tests); ConfigError
    with Hydra's or OmegaConf's message for an unknown key, a wrong type or a bad choice."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    with initialize_config_module(config_module="asr.conf", version_base="1.3"):
        try:
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
            return to_options(cfg)
        except (HydraException, OmegaConfBaseException) as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            raise ConfigError(f"{e}" if cause is e else f"{e} ({cause})") from e


def run_options(run_dir: Path) -> RunOptions:
    """The options a finished run was trained with, from its `.hydra/config.yaml` (a run directory or its
    model/ folder); ConfigError naming the file when there is none or it does not load."""
    from omegaconf.errors import OmegaConfBaseException

    register()
    for candidate in (run_dir, run_dir.parent):
        path = candidate / ".hydra" / "config.yaml"
        if path.is_file():
            try:
                return to_options(
                    OmegaConf.merge(OmegaConf.structured(Config), without_unset_retired(OmegaConf.load(path)))
                )
            except (OmegaConfBaseException, OSError) as e:
                raise ConfigError(f"{path}: the run's settings do not load ({e})") from e
    raise ConfigError(f"{run_dir}: no .hydra/config.yaml here or above; pass the training run directory")


def without_unset_retired(saved: DictConfig) -> DictConfig:
    """A run's saved config without the keys the schema no longer has that were saved unset (null): what an
    earlier schema wrote for its retired aliases. Any other unknown key still fails when merged, naming it."""
    for group in dataclasses.fields(Config):
        node = saved.get(group.name)
        if not isinstance(node, DictConfig):
            continue
        known = {f.name for f in dataclasses.fields(group.default_factory())}
        for key in [k for k in node if k not in known and node[k] is None]:
            del node[key]
    return saved
