"""gato_min: a small, faithful, runnable reproduction of Gato (Reed et al., 2022)."""

__version__ = "0.1.0"

# Where the project lives; README badges and the chapters' Colab install cells use this address,
# and a test keeps them in step with it.
REPOSITORY = "https://github.com/gato-min/gato_min"
