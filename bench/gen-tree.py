#!/usr/bin/env python3
"""Generate a deterministic, Moodle-like code tree for the bundle benchmarks.

    python3 bench/gen-tree.py OUTDIR [--files 30000] [--bytes 300000000] [--seed 1]

The tree has Moodle's layout (mod/<name>/classes/..., lib/..., theme/boost/...,
amd/src/*.js, templates/*.mustache, styles.css, a few executable *.sh) and a
root version.php. File sizes are log-normal (many small files, a few large
ones) and sum to exactly --bytes. Contents are code-like text built from a
vocabulary of keywords, identifiers and comment words, so the tree compresses
about as well as real PHP source with gzip -6 (roughly 4x).

The same arguments always give byte-identical trees (paths, contents, modes).
OUTDIR must not exist or be empty.
"""

import argparse
import math
import os
import random
import sys
import time

VERSION_PHP = b"""<?php
// This file is part of Moodle - https://moodle.org/
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.

defined('MOODLE_INTERNAL') || die();

$version  = 2024100702.00;
$release  = '4.5.2+ (Build: 20250101)';
$branch   = '405';
$maturity = MATURITY_STABLE;
"""

GPL_HEADER = """// This file is part of Moodle - https://moodle.org/
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <https://www.gnu.org/licenses/>.
"""

# --- vocabulary -------------------------------------------------------------

NOUNS = """course user context module grade quiz question attempt section activity
completion capability role enrolment cohort group grouping forum discussion post
assign submission feedback file area item event task cache config setting plugin
instance record field table param string output renderer page block theme
template export import backup restore log report calendar message notification
badge competency rubric scale outcome lesson workshop wiki glossary choice survey
chat scorm tool resource folder label book entry category tag comment rating note
session token service function parameter result response request filter
repository editor format node navigation menu link action button icon image
preference profile summary name description content text value option state
status type mode level time date period timestamp count total limit offset
sort order index position weight score mark points penalty slot usage step
response draft version revision hash path filename mimetype author license
source component subplugin capability manager helper factory provider handler
observer listener writer reader loader builder validator formatter collection
iterator definition store identifier key secret client server endpoint""".split()

VERBS = """get set add update delete create remove save load fetch find check
validate render format export import process handle build prepare execute run
apply compute calculate count list search filter sort parse convert reset
purge clear send notify trigger log store restore backup sync refresh require
can is has should""".split()

ADJECTIVES = """current default visible hidden enabled disabled active inactive
available required optional previous next first last new old final raw formatted
cached pending completed overdue extra internal external public private global
local shared parent child total grouped sorted filtered valid""".split()

WORDS = """the a an of to in for on with by from this that is are be will can
should must may when if not all any each only also then than which where who
returns given current user course module context record value list array
object string integer boolean instance data settings form page used after
before during while the into over under between without within more less new
existing optional required default see note we it its they them these those
check make sure called function method class property ensure otherwise here
there because so just still yet already now always never""".split()

PHP_TYPES = "int string bool array float ?int ?string \\stdClass \\context mixed".split()
JS_TYPES = "Number String Boolean Object Array Promise HTMLElement jQuery".split()

MODS = """assign quiz forum book choice data feedback folder glossary h5pactivity
imscp label lesson lti page qbank resource scorm survey url wiki workshop
bigbluebuttonbn subsection""".split()
BLOCKS = """activity_modules admin_bookmarks badges blog_menu calendar_month comments
completionstatus course_list html login myoverview navigation online_users
recent_activity rss_client search_forums settings timeline""".split()
TOOLS = """analytics behat brickfield capability cohortroles customlang dataprivacy
filetypes generator httpsreplace installaddon langimport licensemanager log lp
messageinbound mfa mobile moodlenet oauth2 phpunit policy recyclebin replace
task templatelibrary uploadcourse uploaduser usertours xmldb""".split()
QTYPES = """calculated ddimageortext ddmarker ddwtos description essay gapselect
match multianswer multichoice numerical ordering random shortanswer
truefalse""".split()
AUTHS = "cas db email ldap lti manual mnet nologin none oauth2 shibboleth webservice".split()
ENROLS = "category cohort database fee flatfile guest imsenterprise ldap lti manual meta paypal self".split()
REPORTS = """completion configlog courseoverview eventlist log loglive outline
participation performance progress questioninstances security stats
usersessions insights competency""".split()
CORE_DIRS = """lib course user admin backup badges calendar cohort competency
completion message question grade group login my notes rating search tag
webservice h5p contentbank analytics reportbuilder privacy availability
comment files cache communication ai""".split()

CLASS_SUBDIRS = """local output event external privacy task form hook
reportbuilder/local/systemreports reportbuilder/local/entities
analytics/indicator courseformat local/helpers""".split()


def components():
    """(directory, frankenstyle, weight) of every component in the tree."""
    out = []
    out += [(f"mod/{m}", f"mod_{m}", 6) for m in MODS]
    out += [(f"blocks/{b}", f"block_{b}", 1) for b in BLOCKS]
    out += [(f"admin/tool/{t}", f"tool_{t}", 2) for t in TOOLS]
    out += [(f"question/type/{q}", f"qtype_{q}", 2) for q in QTYPES]
    out += [(f"auth/{a}", f"auth_{a}", 1) for a in AUTHS]
    out += [(f"enrol/{e}", f"enrol_{e}", 1) for e in ENROLS]
    out += [(f"report/{r}", f"report_{r}", 1) for r in REPORTS]
    out += [(f"course/format/{f}", f"format_{f}", 1) for f in ("singleactivity", "social", "topics", "weeks")]
    out += [(f"lib/editor/tiny/plugins/{p}", f"tiny_{p}", 1) for p in ("accessibilitychecker", "autosave", "equation", "h5p", "link", "media", "noautolink", "premium")]
    out += [("theme/boost", "theme_boost", 8), ("theme/classic", "theme_classic", 2)]
    out += [(d, f"core_{d.replace('/', '')}", 10 if d == "lib" else 4) for d in CORE_DIRS]
    return out


class Vocab:
    """Random code-like fragments, all drawn from one seeded generator."""

    def __init__(self, rng):
        self.r = rng
        self.c = rng.choice

    def snake(self, lo=1, hi=3):
        return "_".join(self.c(NOUNS) for _ in range(self.r.randint(lo, hi)))

    def camel(self):
        first = self.c(VERBS + NOUNS)
        return first + "".join(self.c(NOUNS).capitalize() for _ in range(self.r.randint(0, 2)))

    def func(self):
        return self.c(VERBS) + "_" + self.snake(1, 2)

    def var(self):
        return "$" + (self.c(NOUNS) if self.r.random() < 0.6 else self.snake(2, 2))

    def sentence(self, lo=4, hi=14):
        words = [self.c(WORDS if self.r.random() < 0.55 else NOUNS) for _ in range(self.r.randint(lo, hi))]
        return " ".join(words).capitalize() + "."

    def number(self):
        return str(self.r.choice((0, 1, 2, 10, 100, self.r.randint(0, 99999))))


# --- PHP ----------------------------------------------------------------------

def php_statement(v, ind, vars_, depth=0):
    r, c = v.r, v.c
    a, b = c(vars_), c(vars_)
    k = r.random()
    if k < 0.16:
        return f"{ind}{a} = {b}->{v.func()}({c(vars_)}, '{v.snake(1, 2)}');"
    if k < 0.26:
        return f"{ind}{a} = $DB->get_records('{v.snake(1, 2)}', ['{c(NOUNS)}' => {b}->id], '{c(NOUNS)} ASC');"
    if k < 0.34:
        return f"{ind}// {v.sentence()}"
    if k < 0.42:
        return f"{ind}{a}[] = get_string('{v.snake(1, 3)}', '{c(('core', 'moodle', 'mod_' + c(MODS)))}');"
    if k < 0.50:
        return (f"{ind}$sql = \"SELECT {c(NOUNS)}.id, {c(NOUNS)}.{c(NOUNS)}\n{ind}          FROM {{{v.snake(1, 2)}}} {c(NOUNS)}\n"
                f"{ind}         WHERE {c(NOUNS)}.{c(NOUNS)}id = :{c(NOUNS)} AND {c(NOUNS)}.{c(NOUNS)} > :{c(NOUNS)}\";")
    if k < 0.56:
        return f"{ind}require_capability('{c(('mod', 'moodle', 'tool'))}/{c(NOUNS)}:{c(VERBS)}{c(NOUNS)}', $context);"
    if k < 0.62:
        return f"{ind}{a}->{v.snake(1, 2)} = {c((b + '->' + c(NOUNS), v.number(), 'null', 'true', 'false', 'time()', repr(v.snake(1, 1))))};"
    if k < 0.67:
        return f"{ind}throw new \\{c(('moodle_exception', 'coding_exception', 'invalid_parameter_exception'))}('{v.snake(1, 3)}', '{c(NOUNS)}', '', {a});"
    if k < 0.73:
        return f"{ind}return {c((a, a + '->' + c(NOUNS), 'true', 'false', 'null', '[]', v.func() + '(' + b + ')'))};"
    if depth < 2 and k < 0.86:
        inner = "\n".join(php_statement(v, ind + "    ", vars_, depth + 1) for _ in range(r.randint(1, 3)))
        head = c((f"if (empty({a})) {{", f"if ({a}->{c(NOUNS)} == {b}->{c(NOUNS)}) {{",
                  f"foreach ({a} as {c(vars_)}) {{", f"if (!has_capability('moodle/{c(NOUNS)}:{c(VERBS)}', $context)) {{",
                  f"while ({a} = {b}->{v.func()}()) {{", f"if ({a} > {v.number()} && !{b}) {{"))
        tail = ""
        if r.random() < 0.25:
            tail = f"\n{ind}}} else {{\n" + php_statement(v, ind + "    ", vars_, depth + 1)
        return f"{ind}{head}\n{inner}{tail}\n{ind}}}"
    return f"{ind}{a} = {v.func()}({b}, {c(vars_)}, {v.number()});"


def php_block(v):
    r, c = v.r, v.c
    vars_ = [v.var() for _ in range(r.randint(3, 6))]
    params = vars_[: r.randint(0, 3)]
    doc = ["    /**", f"     * {v.sentence()}"]
    if r.random() < 0.5:
        doc += ["     *", f"     * {v.sentence(8, 20)}"]
    if params:
        doc.append("     *")
    for p in params:
        doc.append(f"     * @param {c(PHP_TYPES)} {p} {v.sentence(3, 8)}")
    ret = c(PHP_TYPES + ["void"])
    doc += [f"     * @return {ret}", "     */"]
    sig = ", ".join(f"{c(PHP_TYPES)} {p}" for p in params)
    vis = c(("public", "public", "protected", "private", "public static"))
    body = "\n".join(php_statement(v, "        ", vars_) for _ in range(r.randint(2, 9)))
    return "\n".join(doc) + f"\n    {vis} function {v.func()}({sig}): {ret} {{\n{body}\n    }}\n\n"


def php_header(v, frank):
    c = v.c
    ns = frank + ("\\" + c(CLASS_SUBDIRS).replace("/", "\\") if v.r.random() < 0.7 else "")
    uses = "".join(f"use {c(('core', frank, 'core_' + c(NOUNS)))}\\{v.snake(1, 2)};\n" for _ in range(v.r.randint(1, 5)))
    return (f"<?php\n{GPL_HEADER}\nnamespace {ns};\n\n{uses}\n/**\n * {v.sentence()}\n *\n"
            f" * @package    {frank}\n * @copyright  20{v.r.randint(10, 25)} Moodle Pty Ltd\n"
            f" * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later\n */\n"
            f"class {v.snake(1, 2)} {c(('', 'extends ' + v.snake(1, 2) + ' ', 'implements ' + v.snake(1, 1) + ' '))}{{\n\n")


# --- JavaScript -----------------------------------------------------------------

def js_block(v):
    r, c = v.r, v.c
    names = [v.camel() for _ in range(r.randint(3, 6))]
    params = names[: r.randint(0, 3)]
    doc = ["/**", f" * {v.sentence()}", " *"] + [f" * @param {{{c(JS_TYPES)}}} {p} {v.sentence(3, 8)}" for p in params]
    doc += [f" * @returns {{{c(JS_TYPES)}}}", " */"]
    lines = []
    for _ in range(r.randint(2, 9)):
        a, b = c(names), c(names)
        k = r.random()
        if k < 0.2:
            lines.append(f"    const {a}{r.randint(0, 9)} = {b}.{v.camel()}('{v.snake(1, 2)}');")
        elif k < 0.35:
            lines.append(f"    // {v.sentence()}")
        elif k < 0.5:
            lines.append(f"    if (!{a}) {{\n        return {c(('null', 'false', b, 'Promise.resolve()'))};\n    }}")
        elif k < 0.62:
            lines.append(f"    {a}.addEventListener('{c(('click', 'change', 'submit', 'keydown'))}', (e) => {{\n"
                         f"        e.preventDefault();\n        {b}.{v.camel()}(e.target.dataset.{v.camel()});\n    }});")
        elif k < 0.74:
            lines.append(f"    return Ajax.call([{{\n        methodname: '{c(('core', 'mod_' + c(MODS)))}_{v.snake(2, 3)}',\n"
                         f"        args: {{{c(NOUNS)}id: {a}, {c(NOUNS)}: {b}}},\n    }}])[0];")
        elif k < 0.86:
            lines.append(f"    const {a}List = document.querySelectorAll(SELECTORS.{v.snake(1, 2).upper()});")
        else:
            lines.append(f"    {a} = await {b}.{v.camel()}({c(names)}, {v.number()});")
    return "\n".join(doc) + f"\nexport const {v.camel()} = async({', '.join(params)}) => {{\n" + "\n".join(lines) + "\n};\n\n"


def js_header(v, frank):
    imports = "".join(f"import {v.camel().capitalize()} from '{v.c(('core', frank))}/{v.snake(1, 2)}';\n"
                      for _ in range(v.r.randint(1, 5)))
    return f"{GPL_HEADER}\n/**\n * {v.sentence()}\n *\n * @module     {frank}/{v.snake(1, 2)}\n */\n\n{imports}\n"


def minify(text):
    out = []
    for line in text.split("\n"):
        s = line.strip()
        if s and not s.startswith(("//", "/**", "*", "*/")):
            out.append(s)
    return "".join(out)


# --- Mustache, CSS, shell ---------------------------------------------------------

def mustache_block(v):
    r, c = v.r, v.c
    lines = []
    for _ in range(r.randint(3, 10)):
        k = r.random()
        n = v.snake(1, 2)
        if k < 0.25:
            lines.append(f'<div class="{c(("d-flex", "card", "mb-3", "p-2", "row", "col-md-6"))} {n}" data-region="{c(NOUNS)}">')
        elif k < 0.45:
            lines.append(f"    {{{{#{n}}}}}\n        <span>{{{{{c(NOUNS)}}}}}</span>\n    {{{{/{n}}}}}")
        elif k < 0.6:
            lines.append(f"    {{{{#str}}}} {v.snake(1, 3)}, {c(('core', 'moodle', 'mod_' + c(MODS)))} {{{{/str}}}}")
        elif k < 0.75:
            lines.append(f'    <a href="{{{{{c(NOUNS)}url}}}}" class="btn btn-{c(("primary", "secondary", "link"))}">{{{{{n}}}}}</a>')
        elif k < 0.85:
            lines.append(f"    {{{{> core/{v.snake(1, 2)} }}}}")
        else:
            lines.append("</div>")
    return "\n".join(lines) + "\n"


def mustache_header(v, frank):
    ctx = "\n".join(f"    * {v.snake(1, 2)} {c_}" for c_ in (v.sentence(3, 6) for _ in range(v.r.randint(2, 5))))
    return ("{{!\n    This file is part of Moodle - https://moodle.org/\n\n    Moodle is free software: you can redistribute it"
            " and/or modify\n    it under the terms of the GNU General Public License as published by\n    the Free Software "
            "Foundation, either version 3 of the License, or\n    (at your option) any later version.\n}}\n"
            f"{{{{!\n    @template {frank}/{v.snake(1, 2)}\n\n    {v.sentence()}\n\n    Context variables required for this template:\n{ctx}\n}}}}\n")


def css_block(v):
    r, c = v.r, v.c
    sel = ", ".join(f".path-{c(('mod', 'admin', 'course', 'user'))}-{c(NOUNS)} .{v.snake(1, 2).replace('_', '-')}" for _ in range(r.randint(1, 3)))
    props = []
    for _ in range(r.randint(2, 7)):
        props.append(c((f"    margin: {r.randint(0, 20)}px {r.randint(0, 20)}px;", f"    padding: {r.randint(0, 3)}.{r.randint(0, 9)}rem;",
                        f"    color: #{r.randint(0, 0xffffff):06x};", f"    display: {c(('flex', 'block', 'none', 'inline-block', 'grid'))};",
                        f"    font-size: {r.randint(7, 24)}px;", f"    border: 1px solid ${c(('gray', 'primary', 'border-color', 'gray-300'))};",
                        f"    width: {r.randint(1, 100)}%;", f"    z-index: {r.randint(0, 1100)};")))
    return f"{sel} {{\n" + "\n".join(props) + "\n}\n\n"


def css_header(v, frank):
    return f"/* {frank}: {v.sentence()} */\n\n"


def sh_block(v):
    r, c = v.r, v.c
    n = v.snake(1, 2).upper()
    return c((f'# {v.sentence()}\n{n}="${{{n}:-{c(NOUNS)}}}"\n',
              f'if [ -z "${n}" ]; then\n    echo "{v.sentence()}" >&2\n    exit {r.randint(1, 3)}\nfi\n',
              f'php admin/cli/{v.snake(1, 2)}.php --{c(NOUNS)}="${n}" || exit 1\n',
              f'for f in "$DIRROOT"/{c(NOUNS)}/*.php; do\n    php -l "$f" > /dev/null\ndone\n'))


def sh_header(v, frank):
    return f"#!/bin/sh\n# {frank}: {v.sentence()}\nset -e\n\n"


# kind: (generator of blocks, file header, pool size in bytes, size weight, extensions)
KINDS = {
    "php": (php_block, php_header, 6_000_000),
    "js": (js_block, js_header, 1_200_000),
    "minjs": (js_block, None, 600_000),
    "mustache": (mustache_block, mustache_header, 700_000),
    "css": (css_block, css_header, 500_000),
    "sh": (sh_block, sh_header, 50_000),
}
# How often each kind is picked, and its relative typical size.
KIND_WEIGHTS = {"php": 0.74, "js": 0.06, "minjs": 0.05, "mustache": 0.09, "css": 0.058, "sh": 0.002}
KIND_SIZE = {"php": 1.0, "js": 0.9, "minjs": 0.5, "mustache": 0.35, "css": 1.5, "sh": 0.25}


def build_pool(v, kind):
    block, _, target = KINDS[kind]
    blocks, n = [], 0
    while n < target:
        text = block(v)
        if kind == "minjs":
            text = minify(text)
        b = text.encode()
        blocks.append(b)
        n += len(b)
    return blocks


def make_path(v, kind, comp):
    """A plausible path for a file of `kind` in component (dir, frankenstyle)."""
    d, frank = comp
    r, c = v.r, v.c
    name = v.snake(1, 2)
    if kind == "php":
        k = r.random()
        if k < 0.45:
            return f"{d}/classes/{c(CLASS_SUBDIRS)}/{name}.php"
        if k < 0.6:
            return f"{d}/tests/{name}_test.php"
        if k < 0.7:
            return f"{d}/db/{c(('access', 'upgrade', 'services', 'events', 'tasks', 'caches', 'install', 'hooks'))}.php"
        if k < 0.78:
            return f"{d}/lang/en/{frank.split('_', 1)[1] if d.startswith('mod/') else frank}.php"
        if k < 0.85:
            return f"{d}/tests/behat/behat_{name}.php"
        if k < 0.9:
            return f"{d}/backup/moodle2/{c(('backup', 'restore'))}_{name}_stepslib.php"
        return f"{d}/{c(('lib', 'locallib', 'index', 'view', 'settings', 'edit', 'renderer', 'mod_form', name))}.php"
    if kind == "js":
        return f"{d}/amd/src/{name}.js"
    if kind == "minjs":
        return f"{d}/amd/build/{name}.min.js"
    if kind == "mustache":
        return f"{d}/templates/{c(('', 'local/', 'local/' + c(NOUNS) + '/'))}{name}.mustache"
    if kind == "css":
        if d.startswith("theme/"):
            return f"{d}/scss/{c(('moodle', 'bootstrap', 'fontawesome'))}/_{name}.scss"
        return f"{d}/styles.css" if r.random() < 0.5 else f"{d}/styles/{name}.css"
    return f"{d}/cli/{name}.sh"


def file_sizes(rng, kinds, total):
    """Log-normal sizes (median ~3 KB, a few files over 1 MB) summing to exactly `total`."""
    raw = [max(80.0, rng.lognormvariate(math.log(3000), 1.5) * KIND_SIZE[k]) for k in kinds]
    scale = total / sum(raw)
    sizes = [max(1, int(x * scale)) for x in raw]
    sizes[max(range(len(sizes)), key=sizes.__getitem__)] += total - sum(sizes)
    return sizes


def content(rng, pool, header, size):
    """`size` bytes: the header, then consecutive pool blocks from a random start, ending in a newline."""
    parts, n = [header], len(header)
    i = rng.randrange(len(pool))
    while n < size:
        b = pool[i]
        parts.append(b)
        n += len(b)
        i = (i + 1) % len(pool)
    data = b"".join(parts)
    return data[: size - 1] + b"\n"


def write_file(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--files", type=int, default=30000, help="number of files, version.php included (default 30000)")
    ap.add_argument("--bytes", type=int, default=300_000_000, help="total size of all files (default 300000000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = ap.parse_args()
    if args.files < 2 or args.bytes < args.files * 100:
        ap.error("need --files >= 2 and at least 100 bytes per file")
    if os.path.isdir(args.outdir) and os.listdir(args.outdir):
        ap.error(f"{args.outdir} exists and is not empty")

    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    v = Vocab(rng)
    pools = {kind: build_pool(v, kind) for kind in KINDS}

    comps = components()
    comp_weights = [w for _, _, w in comps]
    kind_names = list(KIND_WEIGHTS)
    kind_weights = list(KIND_WEIGHTS.values())

    n = args.files - 1
    kinds = rng.choices(kind_names, kind_weights, k=n)
    chosen = rng.choices(comps, comp_weights, k=n)
    paths, seen = [], {"version.php"}
    for kind, (d, frank, _) in zip(kinds, chosen):
        path = make_path(v, kind, (d, frank))
        stem, dot, ext = path.rpartition(".")
        i = 2
        while path in seen:
            path = f"{stem}{i}{dot}{ext}"
            i += 1
        seen.add(path)
        paths.append(path)
    sizes = file_sizes(rng, kinds, args.bytes - len(VERSION_PHP))

    os.makedirs(args.outdir, exist_ok=True)
    write_file(os.path.join(args.outdir, "version.php"), VERSION_PHP, 0o644)
    made = set()
    for path, kind, (d, frank, _), size in zip(paths, kinds, chosen, sizes):
        parent = os.path.join(args.outdir, os.path.dirname(path))
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        make_header = KINDS[kind][1]
        header = make_header(v, frank).encode() if make_header else b""
        write_file(os.path.join(args.outdir, path), content(rng, pools[kind], header, size),
                   0o755 if kind == "sh" else 0o644)

    print(f"gen-tree: {args.files} files, {args.bytes} bytes in {args.outdir} "
          f"({time.perf_counter() - t0:.1f} s, seed {args.seed})", file=sys.stderr)


if __name__ == "__main__":
    main()
