#!/usr/bin/env bash
# Writes pgcluster(1) in roff on stdout, made from the binary's own --help: the overview,
# then every subcommand's help (and their subcommands'), so the man page says what --help
# says and cannot drift from it.
#
#   scripts/man-page.sh .build/release/pgcluster > pgcluster.1
set -euo pipefail

bin="${1:?usage: $0 PGCLUSTER-BINARY}"
version="$("$bin" --version)"
date="$(date -u +%Y-%m-%d -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"

# Roff-safe text: backslashes escaped, a leading dot or quote neutralised.
escape() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

# The names under SUBCOMMANDS: in a help text.
subcommands() { awk '/^SUBCOMMANDS:/ { on = 1; next } on && /^[^ ]/ { on = 0 } on && /^  [a-z]/ { print $1 }'; }

section() {
    local title="$1" help="$2"
    printf '.SS "%s"\n.nf\n' "$title"
    printf '%s\n' "$help" | escape
    printf '.fi\n'
}

top="$("$bin" --help)"
# The overview's first paragraph, on one line, without its final period.
abstract="$(printf '%s\n' "$top" | awk '/^OVERVIEW:/ { on = 1; sub(/^OVERVIEW: */, "") } on && /^$/ { exit } on { printf "%s%s", sep, $0; sep = " " }' | sed 's/\.$//')"
cat <<ROFF
.TH PGCLUSTER 1 "$date" "pgcluster $version" "User Commands"
.SH NAME
pgcluster \\- ${abstract:-build and operate a PostgreSQL streaming-replication cluster}
.SH SYNOPSIS
.B pgcluster
.I command
[\\fIoptions\\fR] [\\fB\\-f\\fR \\fIspec.yaml\\fR]
.SH DESCRIPTION
.nf
ROFF
printf '%s\n' "$top" | escape
printf '.fi\n.SH COMMANDS\n'
for command in $(printf '%s\n' "$top" | subcommands); do
    [ "$command" = help ] && continue
    help="$("$bin" "$command" --help)"
    section "pgcluster $command" "$help"
    for sub in $(printf '%s\n' "$help" | subcommands); do
        [ "$sub" = help ] && continue
        section "pgcluster $command $sub" "$("$bin" "$command" "$sub" --help)"
    done
done
cat <<'ROFF'
.SH EXIT STATUS
0 done; 1 failed; 2 refused as unsafe unless the flag that accepts the risk is given;
64 bad command line; 65 bad spec.
.SH FILES
.TP
.I /etc/pgcluster/NAME.yaml
the spec the unit pgcluster-watch@NAME watches
.TP
.I /var/lib/pgcluster
local.dir of the clusters the watcher unit runs: credentials, state, history, the lock
.SH SEE ALSO
.BR systemctl (1),
.BR pg_ctl (1),
.BR pg_upgrade (1)
ROFF
