"""The timm family: image models from ``timm`` (ViTs, ResNets …) as baselines beside diffusion models.

Any timm architecture, with weights from a local file or a directory as the Hugging Face hub holds
them (``config.json`` + ``model.safetensors``). Blocks are the model's own ``feature_info`` (ViT
blocks as token maps, ResNet stages); the input transform is the model's pretrained data
configuration; there is no noise and no timestep (features are stored as t = 0).

``timm`` is optional: install ``diffprobe[timm]``. Nothing here imports it until a model is
described or loaded.
"""
