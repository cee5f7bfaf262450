import os

# Nothing in the test suite may reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from demo_runs import demo_runs  # noqa: E402, F401  (session fixture: real tiny demo pretrain + finetune)
