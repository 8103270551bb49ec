"""Model files before they load: safetensors headers and tensor-name conventions (`formats`), LoRA layouts judged
from headers (`lora_layouts`), single-file checkpoints against their configs (`single_file_checks`), the zoo's
files checked before loading (`file_checks`), and model sources with the pickle policy (`sources`)."""
