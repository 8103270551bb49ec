"""The one lock every model copyscope builds during an audit is built under."""

import threading

# accelerate's init_empty_weights, which diffusers' and transformers' from_pretrained use, patches torch's
# nn.Module process-wide while a model loads: a module built in another thread meanwhile gets meta tensors
# with no data (the audit scores in a background thread while the engine may be loading). Every model
# copyscope builds while an audit runs is built under this lock: the engine's pipeline and players, and each
# backbone's first load.
MODEL_BUILD_LOCK = threading.RLock()
