"""Datasets and label noise shared by every trainer."""
from data_loader.cifar import CifarData, load_cifar
from data_loader.cifar_n import CIFAR_N_LABELS, load_cifar_n_labels
from data_loader.datasets import (DATASETS, NUM_CLASSES, REAL_DATASETS, DatasetBundle, NoisyDataset, balanced_split,
                                   build_datasets)
from data_loader.digits import DigitsData, load_digits_split
from data_loader.fashion_mnist import FASHION_MNIST_CLASSES, FashionMnistData, load_fashion_mnist
from data_loader.noise import (NOISE_KINDS, asym_class_map, label_cache_root, load_or_make_noisy_labels,
                               make_noisy_labels, noise_summary, noisy_label_path)
from data_loader.transforms import NORMALIZATION, get_transforms
from data_loader.user_data import UserData, load_image_folder, load_npz

__all__ = [
    "CIFAR_N_LABELS", "DATASETS", "FASHION_MNIST_CLASSES", "NOISE_KINDS", "REAL_DATASETS", "NORMALIZATION",
    "NUM_CLASSES", "CifarData", "DatasetBundle", "DigitsData", "FashionMnistData", "NoisyDataset", "UserData",
    "asym_class_map", "balanced_split", "build_datasets", "get_transforms", "label_cache_root", "load_cifar",
    "load_cifar_n_labels", "load_digits_split", "load_fashion_mnist", "load_image_folder", "load_npz",
    "load_or_make_noisy_labels", "make_noisy_labels", "noise_summary", "noisy_label_path",
]
