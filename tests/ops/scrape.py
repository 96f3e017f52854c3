"""Parses a Prometheus text exposition from stdin with prometheus_client's own parser
(independent of the server's encoder) and prints one sample a line:
`type family name{label="value",...} value`, labels sorted, for tests/ops.rs. Exits 1 (with the
parser's error) when the text does not parse."""
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser's own error, whatever its type
        print(f"unparsable exposition: {e!r}", file=sys.stderr)
        return 1
    for family in families:
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            print(f"{family.type} {family.name} {sample.name}{{{labels}}} {sample.value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
