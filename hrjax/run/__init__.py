"""The run layer of ``hrjax boost``: what a folder run does around the pipeline.

``inputs`` finds the images and names their outputs, ``outputs`` says where each output goes, ``records``
keeps the per-image records that make a run resumable, ``setup`` checks the weights and picks the device and
mesh, ``report`` tells a human how the run goes, ``folder`` processes the images one by one. Only ``folder``
imports jax (when an image has to be processed), so a misconfigured call fails before anything heavy loads.
"""
