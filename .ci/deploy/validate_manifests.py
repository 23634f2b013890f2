#!/usr/bin/env python3
"""Validates Kubernetes manifests strictly, built-in kinds and CRDs alike.

    validate_manifests.py --k8s 1.27.0 --k8s 1.37.0 --crds DIR FILE...

- Built-in kinds: the Kubernetes OpenAPI schemas shipped with PyPI `kubernetes-validate`, in
  strict mode (an unknown field is an error), for every --k8s version given.
- Custom resources (cert-manager Certificate/Issuer, ServiceMonitor, PrometheusRule): the
  openAPIV3Schema of the CRD files vendored in DIR (see DIR/README.md), made strict the way
  the API server's strict field validation is: every object that lists `properties` and does
  not preserve unknown fields gets `additionalProperties: false`.
- A kind that neither knows is an error, not a warning (kubernetes-validate only warns).

Prints one line per resource and exits 1 when anything fails.
"""

import argparse
import copy
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """A copy of an openAPIV3Schema that refuses unknown fields, as strict validation does."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # apiVersion, kind and metadata are checked by the API server itself, not by the CRD.
    props = schema.setdefault("properties", {})
    for key in ("apiVersion", "kind", "metadata"):
        props.setdefault(key, {})
    return schema


def load_crds(directory):
    """{(group/version, kind): strict schema} from every CRD file in `directory`."""
    crds = {}
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                crds[key] = strict(version["schema"]["openAPIV3Schema"])
    return crds


def check(doc, crds, versions):
    """Error messages for one resource (empty when valid)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crds:
        validator = jsonschema.Draft7Validator(crds[key])
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        ]
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"no schema for {key[0]} {key[1]} (Kubernetes {version}) and no vendored CRD")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "<root>"
            errors.append(f"Kubernetes {version}: {path}: {e.message}")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k8s", action="append", required=True, help="Kubernetes version, e.g. 1.30.0")
    parser.add_argument("--crds", required=True, help="directory of vendored CRD YAML files")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    crds = load_crds(args.crds)
    failed = passed = 0
    for name in args.files:
        for doc in yaml.safe_load_all(pathlib.Path(name).read_text()):
            if not doc:
                continue
            what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            errors = check(doc, crds, args.k8s)
            if errors:
                failed += 1
                print(f"FAIL {what}")
                for e in errors:
                    print(f"     {e}")
            else:
                passed += 1
                print(f"ok   {what}")
    print(f"manifests: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
