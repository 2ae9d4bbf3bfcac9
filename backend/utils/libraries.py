"""The one place the heavy libraries (torch, accelerate, transformers) are imported.

transformers' lazy module is not safe to import from two threads at once: ``from transformers import
AutoModelForCausalLM`` in two threads of a fresh process raises ``ImportError: cannot import name ...`` in one
of them. So a thread that needs these libraries calls :func:`import_libraries` first: it imports every module in
:data:`LIBRARIES` and resolves every name the backend uses, once per process, under one lock. Afterwards
``from transformers import X`` only reads an attribute that is already set.

Resolving a model class can still import more modeling code lazily (the auto classes import
``transformers.models.<family>`` on first use), so code that builds models outside a load, such as on the meta
device, holds :func:`import_lock` meanwhile. The start-up warm-up holds it for its whole run; a load that starts
then waits for it instead of racing it.

A feature that imports a new name from one of these libraries adds it to :data:`LIBRARIES`;
``tests/backend/test_libraries.py`` fails for a name that is imported in ``backend/`` but not listed here.

torch itself needs no lock: it is an ordinary package, whose import Python's own module locks serialise.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

# (module, names resolved with getattr): what the backend imports from the heavy libraries.
LIBRARIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch", ()),
    ("accelerate", ()),
    (
        "transformers",
        (
            "AutoConfig",
            "AutoModelForCausalLM",
            "AutoTokenizer",
            "DynamicCache",
            "LogitsProcessorList",
            "RepetitionPenaltyLogitsProcessor",
            "TemperatureLogitsWarper",
            "TopKLogitsWarper",
            "TopPLogitsWarper",
            "StoppingCriteria",
            "StoppingCriteriaList",
            "set_seed",
        ),
    ),
    ("transformers.generation.streamers", ("BaseStreamer",)),
    ("transformers.utils.chat_template_utils", ("render_jinja_template",)),
    ("transformers.utils", ("logging",)),
)

# Imported only by the features that need them, on first use (peft alone takes seconds to import, which the
# start-up warm-up should not pay): ``import_libraries("training")``.
ON_DEMAND: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "training": (
        ("peft", ("LoraConfig", "PeftModel", "get_peft_model")),
        ("transformers", ("DataCollatorForSeq2Seq", "Trainer", "TrainerCallback", "TrainingArguments")),
    ),
    # Document embeddings (sentence-transformers imports transformers' lazy modules: under the lock).
    "rag": (("sentence_transformers", ("SentenceTransformer",)),),
    # The optional llama.cpp part (`uv sync --extra llama`): ImportError where it is not installed.
    "llama_cpp": (
        ("llama_cpp", ("Llama", "llama_model_quantize", "llama_model_quantize_default_params", "llama_vocab_is_eog")),
    ),
}

_LOCK = threading.RLock()
_imported = False
_groups: set[str] = set()


def _resolve(libraries: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    for module_name, names in libraries:
        module = importlib.import_module(module_name)
        for name in names:
            getattr(module, name)


def import_libraries(*groups: str) -> None:
    """Import the heavy libraries and resolve the names in :data:`LIBRARIES` (and in the :data:`ON_DEMAND`
    ``groups`` asked for), once per process.

    Safe from any thread: the first caller imports under :func:`import_lock` while the others wait; later calls
    return at once. Call it from worker threads only: the first call takes seconds (and waits for a running
    warm-up), which would stall the event loop.

    Raises:
        ImportError: a library is missing or broken; the next call tries again.
    """
    global _imported
    if _imported and _groups.issuperset(groups):
        return
    with _LOCK:
        if not _imported:
            started = time.perf_counter()
            _resolve(LIBRARIES)
            _imported = True
            logger.debug("imported %s in %.2fs", ", ".join(m for m, _ in LIBRARIES), time.perf_counter() - started)
        for group in groups:
            if group not in _groups:
                _resolve(ON_DEMAND[group])
                _groups.add(group)


@contextmanager
def import_lock() -> Iterator[None]:
    """Hold the library lock: for work that may import more modeling code lazily (building models on the meta
    device, say). Re-entrant, so it may wrap :func:`import_libraries`."""
    with _LOCK:
        yield
