"""Classic recommenders behind one contract: fit, score, recommend, save/load."""

from recllm.models.base import MODEL_REGISTRY, MODELS, Recommender, register
from recllm.models.ease import EASE
from recllm.models.itemknn import ItemKNN
from recllm.models.matrix_factorization import ALS, BPR
from recllm.models.popularity import MostPopular
from recllm.models.registry import create_model, model_names
from recllm.models.text import ItemEmbeddings, ReadsItemText

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "MODELS",
    "MODEL_REGISTRY",
    "ItemEmbeddings",
    "ItemKNN",
    "MostPopular",
    "ReadsItemText",
    "Recommender",
    "create_model",
    "model_names",
    "register",
]
