"""Classic recommenders behind one contract: fit, score, recommend, save/load."""

from recllm.models.base import MODEL_REGISTRY, Recommender, register
from recllm.models.ease import EASE
from recllm.models.itemknn import ItemKNN
from recllm.models.matrix_factorization import ALS, BPR
from recllm.models.popularity import MostPopular
from recllm.models.registry import create_model, model_names

__all__ = ["ALS", "BPR", "EASE", "MODEL_REGISTRY", "ItemKNN", "MostPopular", "Recommender", "create_model",
           "model_names", "register"]
