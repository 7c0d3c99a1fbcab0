"""The docs pages as a reader sees them.

quarto cannot run here, but its input can be checked: `nbdev-proc-nbs` (the docs build's step before quarto)
runs once on a copy of the project; each processed notebook is rendered to HTML with nbconvert, after doing
to it what quarto does with cell options (`#| include/echo/output/warning`, which quarto reads from the top of a
code cell and removes), and each page is loaded in headless Chromium. A script in the page reports, after the
load event, whether every image decoded and what the reader sees: code, prose, outputs, headings and links.

A page fails, with every offending snippet listed, when: it does not load; an image does not decode; a raw `#|`
line shows (see `hash_pipe`); an output is an error, a traceback, ANSI residue or a library warning on stderr;
an output shows progress-bar residue; or a link between pages points to no page or to no anchor on it.
"""
import base64, difflib, html, json, posixpath, re, shutil, subprocess, textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from conftest import ROOT, copy_project, proc_nbs, dump_dom, chromium

PAGES = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb'))
SNIP = 160

def snip(s, n=SNIP):
    "One line, at most `n` characters, of `s`."
    s = re.sub(r'\s+', ' ', s).strip()
    return s if len(s) <= n else s[:n-1] + '…'

# --- Anchors: quarto's, not nbconvert's ---------------------------------------------------------------------------
# quarto hands markdown to pandoc, which gives every heading an id by its `auto_identifiers` rule; nbconvert's ids
# differ (it keeps case and punctuation). So anchors are checked against ids computed from each heading's text with
# pandoc's rule, never against the ids nbconvert put in the HTML.
def pandoc_id(text:str)->str:
    "The id pandoc's `auto_identifiers` gives a heading whose plain text is `text` (before de-duplication)."
    t = ''.join(c for c in text.lower() if c.isalnum() or c in '_-.' or c.isspace())  # drop other punctuation
    t = '-'.join(t.split())                                                             # spaces to hyphens
    t = t[next((i for i, c in enumerate(t) if c.isalpha()), len(t)):]                  # start at the first letter
    return t or 'section'

def pandoc_ids(texts)->list:
    "Ids of headings in document order, de-duplicated the way pandoc does (`x`, `x-1`, `x-2`, ...)."
    seen, out = set(), []
    for t in texts:
        m = re.search(r'\{#([^\s}]+)[^}]*\}\s*$', t)   # an explicit `{#id}` wins (pandoc's header_attributes)
        base = m.group(1) if m else pandoc_id(t)
        i, ident = 0, base
        while ident in seen: i += 1; ident = f'{base}-{i}'
        seen.add(ident); out.append(ident)
    return out

# --- From processed notebook to HTML, the way quarto would show it ----------------------------------------------
TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{% block error -%}
<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="application/vnd.jupyter.stderr"
     data-output-type="error">
<pre>{% for line in output.traceback %}{{ line | ansi2html }}
{% endfor %}</pre>
</div>
{%- endblock error %}
"""

# Runs in the page: after the load event, record what a reader sees, then empty the page so the dump is small.
PROBE = r"""<script>
(function(){
  for (const i of document.images) i.loading = 'eager';
  const prose = el => { const c = el.cloneNode(true);
    c.querySelectorAll('code, pre').forEach(x => x.remove()); return c.textContent; };
  window.addEventListener('load', () => {
    const R = {imgs: [], code: [], prose: [], outputs: [], heads: [], ids: [], links: []};
    for (const i of document.images)
      R.imgs.push({src: (i.getAttribute('src') || '').slice(0, 100), ok: i.complete && i.naturalWidth > 0});
    const cell = el => (el.closest('.jp-Cell') || {id: ''}).id.replace(/^cell-id=/, '');
    document.querySelectorAll('.jp-InputArea-editor')
      .forEach(el => R.code.push({cell: cell(el), text: el.textContent}));
    document.querySelectorAll('.docs-title, .jp-MarkdownCell .jp-RenderedMarkdown')
      .forEach(el => R.prose.push(prose(el)));
    document.querySelectorAll('.jp-OutputArea-output').forEach(el => R.outputs.push({cell: cell(el),
      mime: el.dataset.mimeType || '', error: el.dataset.outputType === 'error',
      bars: el.querySelectorAll('progress').length,
      text: el.innerText, prose: el.classList.contains('jp-RenderedMarkdown') ? prose(el) : null}));
    // headings rendered from markdown (cells and markdown outputs such as show_doc) get pandoc ids: send their text
    document.querySelectorAll('.jp-RenderedMarkdown').forEach(md => md.querySelectorAll('h1,h2,h3,h4,h5,h6')
      .forEach(h => R.heads.push(h.textContent)));
    // ids the author wrote in raw HTML (not nbconvert's heading ids) survive quarto as they are
    document.querySelectorAll('.jp-RenderedMarkdown [id], .jp-RenderedHTML [id]').forEach(el => {
      if (!(el.closest('.jp-RenderedMarkdown') && /^H[1-6]$/.test(el.tagName))) R.ids.push(el.id); });
    document.querySelectorAll('a[href]')
      .forEach(a => R.links.push({href: a.getAttribute('href'), text: a.textContent.slice(0, 60)}));
    document.body.innerHTML = '';
    const out = document.createElement('pre'); out.id = 'docs-check'; out.textContent = JSON.stringify(R);
    document.body.appendChild(out);
  });
})();
</script>
"""

def quarto_view(nb):
    """Do to a processed notebook what quarto does before showing it: read the front matter (title, description,
    output file) and each code cell's leading `#|` option lines, remove those lines, apply `include`, `echo`,
    `output` and `warning`. Returns (notebook, front matter, problems quarto would have with cell options)."""
    import yaml
    front, problems, cells = {}, [], []
    for i, c in enumerate(nb.cells):
        c.metadata.pop('execution', None)   # timings the docs build's executor adds; nbformat's schema rejects them
        if i == 0 and c.cell_type == 'raw' and c.source.startswith('---'):
            front = yaml.safe_load(c.source.strip().strip('-')) or {}
            continue
        if c.cell_type == 'code':
            lines = c.source.split('\n')
            k = next((j for j, l in enumerate(lines) if not l.startswith('#|')), len(lines))
            try: opts = yaml.safe_load(textwrap.dedent('\n'.join(l[2:] for l in lines[:k]))) or {} if k else {}
            except yaml.YAMLError as e: opts = {}; problems.append(f"cell options quarto cannot parse: {snip(str(e))}")
            if not isinstance(opts, dict):
                problems.append(f"cell options are not key: value: {snip(str(lines[:k]))}"); opts = {}
            if opts.get('include') is False: continue
            c.source = '\n'.join(lines[k:])
            tags = set(c.metadata.get('tags', []))
            if opts.get('echo') is False: tags.add('docs_remove_input')
            if opts.get('output') is False: tags.add('docs_remove_output')
            if opts.get('warning') is False: c.outputs = [o for o in c.outputs if o.get('name') != 'stderr']
            c.metadata['tags'] = sorted(tags)
        cells.append(c)
    nb.cells = cells
    return nb, front, problems

def out_name(nb_name, front): return front.get('output-file') or Path(nb_name).stem + '.html'

def render_site(proc:Path, site:Path)->dict:
    ("Render every processed notebook in `proc` to an HTML page in `site` (a copy of `proc`). "
     "Returns page info by notebook name.")
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.filters import markdown2html_mistune
    from traitlets.config import Config
    shutil.copytree(proc, site)
    cfg = Config()
    cfg.TagRemovePreprocessor.enabled = True
    cfg.TagRemovePreprocessor.remove_input_tags = {'docs_remove_input'}
    cfg.TagRemovePreprocessor.remove_all_outputs_tags = {'docs_remove_output'}
    exp = HTMLExporter(config=cfg, extra_loaders=[DictLoader({'docs.html.j2': TEMPLATE})], template_file='docs.html.j2',
                       exclude_anchor_links=True)
    pages = {}
    for f in sorted(site.glob('*.ipynb')):
        nb = nbformat.read(f, as_version=4, capture_validation_error={})   # (not a page problem)
        nb, front, problems = quarto_view(nb)
        title = ''.join(f'<{t} class="docs-title">{markdown2html_mistune(str(front[k]))}</{t}>'
                        for k, t in (('title', 'header'), ('description', 'div')) if k in front)
        if title: nb.cells.insert(0, nbformat.v4.new_raw_cell(title, metadata={'raw_mimetype': 'text/html'}))
        # each code cell's first line, to say where a finding is; and outputs redrawn in place with "\r" (a bar), which
        # the HTML parser turns into line breaks, so look for them before rendering
        cells = {c.id: dict(head=next((l for l in c.source.splitlines() if l.strip()), ''),
                            cr=[snip(next((x for x in reversed(o.text.split('\r')) if x.strip()), ''))
                                for o in c.outputs if o.output_type == 'stream' and re.search(r'\r(?!\n)', o.text)])
                 for c in nb.cells if c.cell_type == 'code'}
        body, _ = exp.from_notebook_node(nb)
        out = out_name(f.name, front)
        (site/out).write_text(body.replace('</body>', PROBE + '</body>', 1))
        pages[f.name] = dict(out=out, problems=problems, cells=cells)
    return pages

def probe(page:Path, profile:Path):
    "Load `page` in headless Chromium: (what the probe saw, None), or (None, why) when the page did not load."
    try: dom = dump_dom(page.as_uri(), profile, extra=['--host-resolver-rules=MAP * ~NOTFOUND'])   # offline: fail fast
    except (AssertionError, subprocess.TimeoutExpired) as e: return None, snip(str(e), 400)
    m = re.search(r'<pre id="docs-check">(.*?)</pre>', dom, re.S)
    return (json.loads(html.unescape(m.group(1))), None) if m else (None, 'no load event within the time budget')

def load_site(proc:Path, tmp:Path)->dict:
    "Render and load every page; add the probe's report and the page's anchors to each page's info."
    pages = render_site(proc, tmp/'site')
    for i, (name, p) in enumerate(pages.items()):
        p['seen'], p['load_error'] = probe(tmp/'site'/p['out'], tmp/f'profile{i}')
        p['anchors'] = set(pandoc_ids(p['seen']['heads'])) | set(p['seen']['ids']) if p['seen'] else set()
    return pages

# --- The checks ------------------------------------------------------------------------------------------------
HASH_PIPE = re.compile(r'^[ \t]*#\|.*$', re.M)
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|^\s*File "[^"]+", line \d+', re.M)
# the escape itself, or what is left of a colour code without it ("[0;31m", a reset "[0m"; not "[5min]")
ANSI = re.compile(r'\x1b\[|(?<![\w\]])\[(?:\d{1,3};)+\d{1,3}m'
                  r'|(?<![\w\]])\[0m|(?<![\w\]])\[m(?![a-z])')   # not '[min, max]'
WARNING = re.compile(r'\b[A-Z]\w*Warning\b|^\s*warn(?:ings\.warn)?\(', re.M)
# fastprogress "14.29% [1/7 00:02<00:15]", tqdm "14%|█▍   | 1/7 [00:02<00:15, 2.5it/s]", a bar between pipes "|███---|"
BAR = re.compile(r'\d{1,3}(?:\.\d+)?% \[\d+/\d+|\d{1,3}%\||\[\d\d:\d\d<'
                 r'|\d+(?:\.\d+)?(?:it|s)/(?:s|it)\]|\|[█▉▊▋▌▍▎▏]+[-─ ]*\|')

def _where(page, cell):
    "Where an output or code block sits: its cell's first line of code (or that the code is hidden)."
    head = page['cells'].get(cell, {}).get('head')
    return f"[cell `{snip(head, 60)}`] " if head else "[cell with no code] " if cell in page['cells'] else ""

def _around(t, m, n=70): return snip(t[max(0, m.start()-n):m.end()+n])

def hash_pipe(page)->list:
    """Raw `#|` lines a reader would see. quarto removes the option lines at the top of a code cell (see
    `quarto_view`); a `#|` line left in shown code is one nbdev and quarto both ignored (a directive below other
    code, or a typo), so it shows as noise; so does a `#|` line in a text output. In prose (markdown cells and
    markdown outputs such as show_doc's), `#|` inside inline code or a code block is the author showing the syntax
    (e.g. "marked `#| slow`") and is fine; `#|` anywhere in plain prose is not."""
    seen = page['seen']
    found = [f"in code: {_where(page, c['cell'])}{snip(m.group())}" for c in seen['code']
             for m in HASH_PIPE.finditer(c['text'])]
    found += [f"in prose: {_around(t, m, 60)}" for t in seen['prose'] for m in re.finditer('#\\|', t)]
    found += [f"in an output: {_where(page, o['cell'])}{_around(o['prose'], m, 60)}" for o in seen['outputs']
              if o['prose'] is not None for m in re.finditer('#\\|', o['prose'])]
    found += [f"in an output: {_where(page, o['cell'])}{snip(m.group())}" for o in seen['outputs']
              if o['prose'] is None for m in HASH_PIPE.finditer(o['text'])]
    return found

def error_outputs(page)->list:
    """Errors a reader would see: an error output, a traceback or ANSI colour residue in any output, a library
    warning on stderr. Deliberate messages the lesson shows (e.g. the CLI's own 'error: ... does not exist' on
    stderr, or an exception's message printed as a result) are not tracebacks or warnings and pass."""
    found = []
    for o in page['seen']['outputs']:
        t, at = o['text'], _where(page, o['cell'])
        if o['error']: found.append(f"error output: {at}{snip(t.strip().splitlines()[-1] if t.strip() else t)}")
        elif (m := TRACEBACK.search(t)): found.append(f"traceback: {at}{_around(t, m)}")
        if (m := ANSI.search(t)): found.append(f"ANSI residue: {at}{_around(t, m, 40)}")
        if o['mime'] == 'application/vnd.jupyter.stderr' and not o['error'] and (m := WARNING.search(t)):
            found.append(f"warning on stderr: {at}{_around(t, m, 100)}")
    return found

def progress_residue(page)->list:
    """Progress bars left in outputs: HTML `<progress>` bars, fastprogress/tqdm text, and text redrawn in place
    with `\\r` (reported on its own only where the bar text was not already found in that cell)."""
    found, cells = [], set()
    for o in page['seen']['outputs']:
        at = _where(page, o['cell'])
        if o['bars']: found.append(f"{o['bars']} HTML progress bar(s): {at}{snip(o['text'])}"); cells.add(o['cell'])
        if (m := BAR.search(o['text'])):
            redrawn = " (the cell redraws output with \\r)" if page['cells'].get(o['cell'], {}).get('cr') else ""
            found.append(f"progress-bar text{redrawn}: {at}{_around(o['text'], m, 50)}"); cells.add(o['cell'])
    found += [f"output redrawn in place with \\r (a bar?): {_where(page, c)}{x}" for c, info in page['cells'].items()
              if c not in cells for x in info['cr']]
    return found

HOST = re.compile(r'(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}'
                  r'|localhost|\d{1,3}(?:\.\d{1,3}){3}', re.I)

def bad_links(name, pages)->list:
    """Links that would not resolve on the site. quarto rewrites a link to a notebook (`30_lr_finder.ipynb#x`) to
    that notebook's page, which nbdev names without the number (`output-file: lr_finder.html`); so a link must name
    the notebook, or the page by its output name, and its `#anchor` must be a pandoc id on that page. Links to
    files must stay inside the site (quarto publishes the processed notebooks' folder only). http(s) links are
    not fetched (no internet): they must be well formed."""
    page, found = pages[name], []
    by_out = {p['out']: n for n, p in pages.items()}
    for link in page['seen']['links']:
        href, what = link['href'], f"[{snip(link['text'], 40)}]({snip(link['href'], 100)})"
        u = urlsplit(href)
        if u.scheme in ('http', 'https'):
            if (not (u.hostname and HOST.fullmatch(u.hostname))
                or re.search(r'\s', href) or href.count('(') < href.count(')')):
                found.append(f"malformed external link {what}")
            continue
        if u.scheme == 'mailto': continue
        if u.scheme or u.netloc: found.append(f"link outside the site {what}"); continue
        path, target = unquote(u.path), None
        if not path: target = name
        else:
            p = posixpath.normpath(path)
            if p.startswith('..') or p.startswith('/'):
                found.append(f"link leaves the site (quarto publishes only the docs folder) {what}"); continue
            if p in pages: target = p
            elif p in by_out: target = by_out[p]
            elif p.endswith('.html') and p[:-5]+'.ipynb' in pages:
                found.append(f"no page {p}: that notebook is published as {pages[p[:-5]+'.ipynb']['out']} "
                             f"(link to {p[:-5]}.ipynb) {what}"); continue
            elif p.endswith(('.ipynb', '.html', '.qmd', '.md')): found.append(f"no such page {p} {what}"); continue
            else: continue   # another file of the site (an image, a css): the browser check covers images
        if u.fragment and u.fragment not in pages[target]['anchors']:
            near = difflib.get_close_matches(u.fragment, sorted(pages[target]['anchors']), n=1)
            found.append(f"no anchor #{u.fragment} on {pages[target]['out']} {what}"
                         + (f" (closest: #{near[0]})" if near else ""))
    return found

def findings(name, pages)->dict:
    "Every problem on one page, by kind."
    p = pages[name]
    if p['seen'] is None: return {'does not load': [p['load_error']]}
    f = {'cell options': p['problems'],
         'images that do not decode': [f"<img src={i['src']!r}>" for i in p['seen']['imgs']
                                       if not i['ok'] and not i['src'].startswith(('http:', 'https:'))],
         'raw #| directives': hash_pipe(p),
         'errors, tracebacks, warnings': error_outputs(p),
         'progress-bar residue': progress_residue(p),
         'links that do not resolve': bad_links(name, pages)}
    return {k: v for k, v in f.items() if v}

def report(name, pages, f)->str:
    kinds = (f"  {k}:\n" + '\n'.join(f"    - {s}" for s in v) for k, v in f.items())
    return f"{name} (page {pages[name]['out']}):\n" + '\n'.join(kinds)

# --- Tests -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def site(request, tmp_path_factory):
    chromium()   # skip (or, in CI, fail) before processing anything when there is no browser
    return load_site(request.getfixturevalue('docs_proc'), tmp_path_factory.mktemp('docs'))

@pytest.mark.parametrize('name', PAGES)
@pytest.mark.slow
def test_page_as_a_reader_sees_it(site, name):
    "The page loads, its images decode, and it shows no raw directive, error, warning, progress residue or broken link."
    assert name in site, f"{name} was not processed by nbdev-proc-nbs"
    f = findings(name, site)
    assert not f, report(name, site, f)

def test_pandoc_ids():
    "Examples from pandoc's manual (auto_identifiers), and its de-duplication."
    for text, ident in [("Heading identifiers in HTML", "heading-identifiers-in-html"),
                        ("Maître d'hôtel", "maître-dhôtel"),
                        ("*Dogs*?--in *my* house?".replace('*', ''), "dogs--in-my-house"),
                        ("[HTML], [S5], or [RTF]?", "html-s5-or-rtf"),
                        ("3. Applications", "applications"), ("33", "section"),
                        ("fine_tune rebuilt", "fine_tune-rebuilt"),
                        ("Reading the curve: four suggestion rules", "reading-the-curve-four-suggestion-rules")]:
        assert pandoc_id(text) == ident, (text, pandoc_id(text), ident)
    assert pandoc_ids(['Setup', 'Setup', 'Setup', 'Go {#go}']) == ['setup', 'setup-1', 'setup-2', 'go']

PLANTED_MD = """## A planted section

Fine: a link to [this section](index.ipynb#a-planted-section), to [a lesson](30_lr_finder.ipynb), to
[the same page by its output name](index.html#a-planted-section), and prose that shows the syntax: `#| slow`.

Broken: [no anchor](index.ipynb#no-such-section), [no page](99_missing.ipynb), [numbered html](30_lr_finder.html),
[outside](../README.md), [bad url](https://example..com/x) and a stray #| directive in plain prose."""

@pytest.mark.slow
def test_checker_finds_planted_problems(tmp_path):
    ("Plant one of each problem in a copy of index.ipynb, run the whole pipeline, "
     "and check each is reported (and nothing fine is).")
    import nbformat
    cp = copy_project(tmp_path/'proj')
    for nb in (cp/'nbs').glob('*.ipynb'):
        if nb.name not in ('index.ipynb', '30_lr_finder.ipynb'): nb.unlink()
    nb = nbformat.read(cp/'nbs'/'index.ipynb', as_version=4)
    v4 = nbformat.v4
    png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='
    cut = base64.b64encode(base64.b64decode(png)[:30]).decode()   # a truncated PNG: the browser cannot decode it
    nb.cells += [
        v4.new_markdown_cell(PLANTED_MD),
        v4.new_code_cell("x = 1\n#| slow\nx",
                         outputs=[v4.new_output('execute_result', {'text/plain': '1'}, execution_count=1)]),
        v4.new_code_cell("boom()", outputs=[v4.new_output('error', ename='NameError',
            evalue="name 'boom' is not defined",
            traceback=['\x1b[0;31m' + '-'*75 + '\x1b[0m',
                       "\x1b[0;31mNameError\x1b[0m: name 'boom' is not defined"])]),
        v4.new_code_cell("warn_me()", outputs=[v4.new_output('stream', name='stderr',
            text="/x/site-packages/fastai/learner.py:456: UserWarning: planted warning\n  warn('planted')\n")]),
        v4.new_code_cell("train()", outputs=[
            v4.new_output('stream', name='stdout', text="epoch 0\n100.00% [8/8 00:01<00:00]\n"),
            v4.new_output('stream', name='stdout', text="10%|█         | 1/10\r50%|█████     | 5/10\r")]),
        v4.new_code_cell("run_script()", outputs=[v4.new_output('stream', name='stdout',
            text='Traceback (most recent call last):\n  File "s.py", line 1, in <module>\n'
                 '[0;31mValueError[0m: planted\n')]),
        v4.new_code_cell("loop()", outputs=[v4.new_output('stream', name='stdout', text="step 1\rstep 2\rstep 3\n")]),
        v4.new_code_cell("show()", outputs=[v4.new_output('display_data', {'image/png': cut, 'text/plain': 'fig'}),
                                            v4.new_output('display_data', {'image/png': png, 'text/plain': 'fig'})]),
    ]
    nbformat.write(nb, cp/'nbs'/'index.ipynb')
    chromium()
    pages = load_site(proc_nbs(cp), tmp_path)
    f = findings('index.ipynb', pages)
    flat = report("index.ipynb", pages, f)
    links = f.get('links that do not resolve', [])
    assert any('no anchor #no-such-section on index.html' in s for s in links), flat
    assert any('no such page 99_missing.ipynb' in s for s in links), flat
    assert any('no page 30_lr_finder.html' in s and 'lr_finder.html' in s for s in links), flat
    assert any('leaves the site' in s and '../README.md' in s for s in links), flat
    assert any('malformed external link' in s for s in links), flat
    fine = [s for s in links if re.search(r'\[(this section|a lesson|the same page by its output name)\]', s)]
    assert not fine, f"a fine link was reported: {fine}"
    pipes = f.get('raw #| directives', [])
    assert any(s.startswith('in code: [cell `x = 1`] #| slow') for s in pipes), flat
    assert any(s.startswith('in prose:') and 'stray #| directive' in s for s in pipes), flat
    assert len(pipes) == 2, f"the backticked `#| slow` or a quarto option line was reported: {pipes}"
    errs = f.get('errors, tracebacks, warnings', [])
    assert any('error output' in s and 'NameError' in s for s in errs), flat
    assert any('warning on stderr' in s and 'UserWarning' in s for s in errs), flat
    assert any(s.startswith('traceback: [cell `run_script()`]') for s in errs), flat
    assert any(s.startswith('ANSI residue: [cell `run_script()`]') and '[0;31mValueError' in s for s in errs), flat
    assert len(errs) == 4, f"something fine was reported as an error: {errs}"
    bars = f.get('progress-bar residue', [])
    assert any('100.00% [' in s and 'train()' in s for s in bars), flat
    assert any('redraws output with \\r' in s for s in bars), flat
    assert any(s.startswith('output redrawn in place') and 'loop()' in s and 'step 3' in s for s in bars), flat
    assert len(f.get('images that do not decode', [])) == 1, flat
    assert 'does not load' not in f
    assert not findings('30_lr_finder.ipynb', pages).get('does not load')

def test_ansi_rule_spares_bracketed_prose():
    "ANSI colour residue is caught, but prose such as '[min, max]' is not taken for it."
    for residue in ['\x1b[0;31mError', '[0;31mValueError', 'done [0m: x', 'a [m b']:
        assert ANSI.search(residue), residue
    for prose in ['mean ± std [min, max] over images', '[mm:ss]', 'range [0, 1]', 'x[m]']:
        assert not ANSI.search(prose), prose
