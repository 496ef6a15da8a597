#!/usr/bin/env python3
# Compare two progressive runs answer for answer: python3 scripts/compare-results.py A/results.json B/results.json
# Every number of every common step except times and rates must be equal (the speedups of the main job
# are checked this way: same answers bit for bit); prints the differences and both runs' phase times.
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
k = min(len(a['steps']), len(b['steps']))
def strip(x):
    # everything that is a result (numbers), not a time or a rate
    if isinstance(x, dict):
        return {kk: strip(v) for kk, v in x.items() if kk not in ('seconds', 'samplesPerSecond', 'trainSeconds', 'runSeconds', 'phaseSeconds', 'record')}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
diffs = []
def walk(x, y, path):
    if isinstance(x, dict):
        if set(x) != set(y): diffs.append((path, 'keys', sorted(set(x) ^ set(y))))
        for kk in x:
            if kk in y: walk(x[kk], y[kk], path + '.' + kk)
    elif isinstance(x, list):
        if len(x) != len(y): diffs.append((path, 'len', len(x), len(y)))
        for i, (u, v) in enumerate(zip(x, y)): walk(u, v, f'{path}[{i}]')
    elif x != y:
        diffs.append((path, x, y))
n = 0
def count(x):
    global n
    if isinstance(x, dict): [count(v) for v in x.values()]
    elif isinstance(x, list): [count(v) for v in x]
    elif isinstance(x, (int, float)): n += 1
for i in range(k):
    sa, sb = strip(a['steps'][i]), strip(b['steps'][i])
    count(sa)
    walk(sa, sb, f'steps[{i}]')
print(f'compared {k} steps, {n} numbers: {len(diffs)} differences')
for d in diffs[:20]: print(' ', d)
if len(a['steps']) == len(b['steps']) and a.get('decision') is not None:
    print('decision equal:', a['decision'] == b['decision'])
for name, r in (('A', a), ('B', b)):
    ps = r.get('phaseSeconds'); rs = r.get('runSeconds')
    print(name, 'phases', {kk: round(v, 1) for kk, v in ps.items()} if ps else None, 'run', {kk: round(v, 1) for kk, v in rs.items()} if rs else None)
    print(name, 'per step (priors/train/eval):', [(round(s['seconds']['priors'],1), round(s['seconds']['train'],1), round(s['seconds']['eval'],1)) for s in r['steps']])
