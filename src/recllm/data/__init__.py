"""Data layer: vocabularies, interaction datasets, item catalogs, ranked item lists, loaders, splits."""

from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item, ItemCatalog
from recllm.data.dataset import Dataset
from recllm.data.files import FileDatasetConfig, load_files, load_files_toml
from recllm.data.itemlist import ItemList, ScoredItem
from recllm.data.movielens import load_grouplens_1m, load_grouplens_100k
from recllm.data.registry import dataset_names, load_dataset
from recllm.data.validation import InteractionColumns, ItemColumns, LoadReport, build_catalog, build_dataset
from recllm.data.vocabulary import Vocabulary

__all__ = [
    "DataBundle",
    "Dataset",
    "FileDatasetConfig",
    "InteractionColumns",
    "Item",
    "ItemCatalog",
    "ItemColumns",
    "ItemList",
    "LoadReport",
    "ScoredItem",
    "Vocabulary",
    "build_catalog",
    "build_dataset",
    "dataset_names",
    "load_dataset",
    "load_files",
    "load_files_toml",
    "load_grouplens_1m",
    "load_grouplens_100k",
]
