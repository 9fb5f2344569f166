"""The configuration center: settings and governance rules in etcd, applied live.

One place — etcd, under ``/dubbok/<namespace>/config/`` — holds the services' own settings
and their governance rules, in three scopes (``global/``, ``apps/<app>/``,
``services/<service>/``; see :mod:`~dubbok.config.keys`). A process follows its scopes with
one watch and applies a change in milliseconds; a document that does not validate is
refused by the CLI and, if another tool writes it anyway, ignored by every process, which
keeps the last good version.

=========================================  ==================================================
piece                                      job
=========================================  ==================================================
:mod:`~dubbok.config.rules`                the rule document models (pydantic, strict)
:mod:`~dubbok.config.validation`           validation with field paths; the JSON schema
:mod:`~dubbok.config.effective`            precedence, gray rules → :class:`EffectiveRules`
:mod:`~dubbok.config.center`               :class:`ConfigCenter`: one process's live view
:mod:`~dubbok.config.store`                :class:`ConfigStore`: CAS writes with history
=========================================  ==================================================

Precedence, lowest first: code defaults < global < app < service < method (see
:mod:`~dubbok.config.effective` for the exact rule).

Wiring into an App::

    center = ConfigCenter(registry_url, app_name)
    center.start()
    rules = center.rules_for(service)                    # EffectiveRules
    center.on_rules_change(service, rebuild)             # on the config thread
    options = rules.reference_options(code_options)      # ReferenceOptions with rules applied

To extend the rules, add a field to :class:`~dubbok.config.rules.RuleBody` (a section
model if it has several fields), give :class:`EffectiveRules` an accessor for it, and run
``tools/gen_rule_docs.py`` to refresh the reference in ``docs/configuration.md``.
"""

from __future__ import annotations

from .center import ConfigCenter, RulesListener, Subscription
from .effective import EffectiveRules, MethodRules, effective_rules, merge
from .errors import (
    ConflictError,
    InvalidKeyError,
    NotFoundError,
    Problem,
    RuleValidationError,
    ValueTooLargeError,
)
from .gray import InstanceIdentity
from .keys import ConfigKey, KeyLayout, Scope, parse_key
from .rules import DegradeRule, GovernanceRule, RuleBody
from .settings import Bound
from .store import Change, ConfigStore, Entry, WriteResult
from .validation import rule_schema, validate_rule

__all__ = [
    "Bound",
    "Change",
    "ConfigCenter",
    "ConfigKey",
    "ConfigStore",
    "ConflictError",
    "DegradeRule",
    "EffectiveRules",
    "Entry",
    "GovernanceRule",
    "InstanceIdentity",
    "InvalidKeyError",
    "KeyLayout",
    "MethodRules",
    "NotFoundError",
    "Problem",
    "RuleBody",
    "RuleValidationError",
    "RulesListener",
    "Scope",
    "Subscription",
    "ValueTooLargeError",
    "WriteResult",
    "effective_rules",
    "merge",
    "parse_key",
    "rule_schema",
    "validate_rule",
]
