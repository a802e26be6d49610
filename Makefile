# make test   lint and format check (ruff), unit tests, executed chapters (pytest --nbval), in .venv
# make lint   ruff check + ruff format --check only
# make demo   the whole job on this machine: collect expert data, train, play and score (~8 min, runs/demo)
# make chapters   re-execute and clean every chapter, regenerate media/
# make text-model retrain the shipped SentencePiece model from its committed corpus
# make experts    train (or resume, from the cache or experts/<task>) the MuJoCo TD3 experts
# make mutation   mutation testing (mutmut) of the five core modules against their fast tests; not part of make test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NBVAL := --nbval  # exactly the command a reader types: its settings live in pyproject.toml and chapters/conftest.py

.PHONY: test lint unit nbval demo chapters text-model experts mutation clean

$(STAMP): environment.yml pyproject.toml tools/pins.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PYTHON) tools/pins.py environment.yml > $(VENV)/requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q -r $(VENV)/requirements.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest tests/ -q
	$(PY) -m pytest $(NBVAL) chapters/ -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

unit: $(STAMP)
	$(PY) -m pytest tests/ -q

nbval: $(STAMP)
	$(PY) -m pytest $(NBVAL) chapters/ -q

demo: $(STAMP)
	$(PY) -m gato_min demo --out runs/demo

chapters: $(STAMP)
	$(PY) tools/build_chapters.py

text-model: $(STAMP)
	$(PY) -m gato_min train-text-model

experts: $(STAMP)
	for task in halfcheetah hopper walker2d; do \
	  $(PY) -m gato_min train-expert --task $$task --resume-from experts/$$task && \
	  $(PY) -m gato_min save-expert-state --task $$task; done

mutation: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q mutmut==3.8.1
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2  # one thread: the time limit counts CPU seconds
	$(PY) tools/mutation_score.py

clean:
	rm -rf runs/ .pytest_cache .hypothesis
