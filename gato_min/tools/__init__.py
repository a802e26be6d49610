"""What a maintainer runs, apart from the teaching modules: the command line (`cli`), the demo
pipeline (`demo`), the tokenization demo (`tokenize_demo`), expert training (`experts`), the
text model (`text_model`) and the benchmarks (`benchmarks`)."""
