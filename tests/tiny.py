"""Small models for fast tests."""

from __future__ import annotations

from mpe_ssl.models import TimbreTrapAE


def tiny_network(**kwargs) -> TimbreTrapAE:
    """The Timbre-Trap autoencoder at complexity 1 (about 22 k parameters)."""
    return TimbreTrapAE(model_complexity=1, **kwargs)


def tiny_demo_config(root, out, **data) -> dict:
    """The shipped demo config, shrunk for tests: a complexity-1 network, one chorale of each
    split of ``root``, 1 s excerpts, 4 steps per epoch, every file written under ``out``.

    ``data`` overrides the datamodule's init_args.
    """
    import yaml

    from mpe_ssl import configs

    config = yaml.safe_load(open(configs.resolve("demo")).read())
    out = str(out)
    trainer = config["trainer"]
    trainer.update(enable_progress_bar=False, enable_model_summary=False)
    configs.write_outputs_to(config, out)
    config["model"]["init_args"]["network"]["init_args"]["model_complexity"] = 1
    config["data"]["init_args"].update({
        "root": str(root), "steps_per_epoch": 4, "excerpt_seconds": 1.0, "num_workers": 0,
        "train_streams": [{"kind": "labelled", "split": "train", "count": 1, "batch_size": 2}],
        "val_streams": [{"kind": "labelled", "split": "val", "count": 1}],
        "test_streams": [{"kind": "labelled", "split": "test", "count": 1}],
        **data,
    })
    return config
