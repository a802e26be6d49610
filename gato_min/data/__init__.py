"""Behaviour data made here: the task registry, expert policies, datasets and their readers."""
