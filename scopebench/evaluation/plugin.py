"""lmms-eval entry point (group ``lmms_eval.models``): registers the ``scope`` model.

A function, not a module-level manifest, so that lmms-eval's registry can load it while
it is itself being imported (no circular import)."""


def manifest():
    """The ModelManifest of ``lmms-eval --model scope --model_args pretrained=DIR``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="scope", simple_class_path="scopebench.evaluation.adapter.ScopeLMM")
