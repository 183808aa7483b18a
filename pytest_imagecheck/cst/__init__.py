"""container-structure-test (CST) files, run natively with CST's own verdicts.

A YAML file whose top level has ``schemaVersion`` is a CST file. :func:`load_cst` reads it
as container-structure-test 1.19 does (gopkg.in/yaml.v2, strict: an unknown key or a wrong
type stops the file, here with one ``file:line`` line); :mod:`.runner` runs each test against
the engine with the verdict the real binary gives, quirks included; :mod:`.items` makes each
test one pytest item, named as the file names it.

=============  ===========================================================================
``schema``     the schema 2.0.0 as data classes, decoded with yaml.v2's rules, and validated
``golang``     the Go behaviour CST inherits: ``os.Expand``, RE2 regular expressions,
               ``FileMode.String``, ``path.Clean``, godotenv files
``runner``     the tests against the engine: fresh containers where CST makes them, one
               shared container with an exec per command where that changes no verdict
``items``      the pytest file and items, their failures and evidence
=============  ===========================================================================
"""

from __future__ import annotations

from .schema import CstError, CstFile, is_cst_document, load_cst

__all__ = ["CstError", "CstFile", "is_cst_document", "load_cst"]
