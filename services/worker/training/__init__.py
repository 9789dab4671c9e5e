"""Training library for worker objectives: sparse layers, k-winners, sparse ResNets, data, loop.

Plain PyTorch: no Celery, Redis or HTTP inside. See ``docs/sparse-resnet50.md``.
"""
