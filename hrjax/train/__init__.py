"""Training of the merge network (SPEC-TRAINING): dataset generation, loader, PatchGAN, train step, loop.

Public API (import from the submodules; this package imports nothing heavy on its own):

- :mod:`hrjax.train.make_dataset`: ``make_merge_dataset``, ``DatasetConfig``, ``PRESETS``, ``crop_grid``
- :mod:`hrjax.train.data`: ``open_dataset``, ``preprocess``, ``load_sample``, ``iterate_batches``, ``epoch_order``
- :mod:`hrjax.train.guided_filter`: ``guided_filter``, ``box_sum``
- :mod:`hrjax.train.matlab_resize`: ``imresize`` (MATLAB bicubic, antialiased)
- :mod:`hrjax.train.nets`: ``NLayerDiscriminator``, ``NetConfig``, ``NetDef``
- :mod:`hrjax.train.step`: ``TrainConfig``, ``Trainer`` (``init_state``, jitted ``step``), ``lr_factor``,
  ``schedule``, ``resize_bilinear``, ``training_mesh``
- :mod:`hrjax.train.checkpoint`: orbax save/restore, ``export_generator``
- :mod:`hrjax.train.loop`: ``train``
- :mod:`hrjax.train.cli`: ``register(app)`` adds ``train-merge`` and ``make-merge-dataset``
"""
