"""Sigma detection: load rules with pySigma, compile each once into a predicate, match streamed events.

pySigma parses rules and applies value modifiers (its modifier classes turn ``|contains`` into wildcards,
``|base64offset`` into an expansion, ...). This package turns the resulting typed values into fast predicates
(:mod:`.modifiers`), combines them as the rule's condition says (:mod:`.conditions`), and indexes compiled rules
by log source and by the literal values every match requires (:mod:`.index`).
"""

from correlation.detection.engine import Match, RuleSet, RuleSetHolder
from correlation.detection.loader import LoadedRules, RuleProblem, load_rules

__all__ = ["LoadedRules", "Match", "RuleProblem", "RuleSet", "RuleSetHolder", "load_rules"]
