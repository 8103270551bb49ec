"""Demo zoo: tiny Stable-Diffusion-shaped models built from configs, and a small zoo with a planted
infringer (a LoRA trained to memorise a reference work) plus decoys, with ground truth.

``copyscope.demo.tiny``  — random-weight tiny components (tests, benchmarks).
``copyscope.demo.build`` — the trained demo zoo (``copyscope demo build``).
"""
