#!/usr/bin/env python3
"""Import cycles between the files of each crate: an edge for every `crate::a` / `super::a`
path (use groups and re-exports resolved); prints each cycle (a strongly connected component).

    python3 scripts/import-cycles.py crates/*/src src
"""
import os, re, sys
def modpath(root, f):
    rel = os.path.relpath(f, root)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ('mod','lib','main'): parts = parts[:-1]
    return parts
def analyse(root):
    files = {}
    for d,_,fs in os.walk(root):
        for f in fs:
            if f.endswith('.rs'):
                p=os.path.join(d,f); files[tuple(modpath(root,p))]=p
    mods=set(files)
    edges={m:set() for m in mods}
    # names re-exported by a module file (`pub use a::{B, c::D}`) -> the module they come from
    reexp={}
    for m,p in files.items():
        src=open(p).read()
        for mm in re.finditer(r'pub use ([a-z_][a-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_:]*)\s*;', src, flags=re.S):
            sub=m+(mm.group(1),)
            if sub not in mods: continue
            for n in re.findall(r'[A-Za-z_][A-Za-z0-9_]*', mm.group(2)):
                reexp[m+(n,)]=sub
    for m,p in files.items():
        src=open(p).read()
        src=re.sub(r"//[^\n]*", "", src)
        parent=m[:-1]
        src=src.replace('super::', 'crate::'+''.join(p+'::' for p in parent))
        src=re.sub(r'#\[cfg\(test\)\]\s*mod tests\s*\{.*', '', src, flags=re.S)
        # expand `use crate::{a, b::c}` roughly: collect crate:: paths
        def groups(src):
            for mm in re.finditer(r'crate::', src):
                k=mm.end()
                if k<len(src) and src[k]=='{':
                    depth=0; j=k
                    while True:
                        if src[j]=='{': depth+=1
                        elif src[j]=='}':
                            depth-=1
                            if depth==0: break
                        j+=1
                    yield flatten(src[k+1:j])
                else:
                    m2=re.match(r'[A-Za-z_][A-Za-z0-9_:]*', src[k:])
                    if m2: yield [m2.group(0)]
        def flatten(body, prefix=''):
            out=[]; depth=0; cur=''
            items=[]
            for ch in body:
                if ch=='{': depth+=1
                if ch=='}': depth-=1
                if ch==',' and depth==0: items.append(cur.strip()); cur=''; continue
                cur+=ch
            items.append(cur.strip())
            for it in items:
                if not it: continue
                if '{' in it:
                    head=it[:it.index('{')].rstrip(':').strip()
                    inner=it[it.index('{')+1:it.rindex('}')]
                    for x in flatten(inner): out.append(prefix+head+'::'+x)
                else: out.append(prefix+it.split(' as ')[0].strip())
            return out
        for names in groups(src):
          for n in names:
            txt=n
            for n in [txt]:
                segs=n.split('::')
                # longest module prefix
                best=None
                for k in range(len(segs),0,-1):
                    if tuple(segs[:k]) in mods: best=tuple(segs[:k]); break
                if best is not None and k < len(segs) and best+(segs[k],) in reexp:
                    best = reexp[best+(segs[k],)]
                elif best is None and tuple(segs[:1]) in reexp:
                    best = reexp[tuple(segs[:1])]
                elif best is None and ((segs[0],),) and () in mods and ( (segs[0],) in reexp):
                    best = reexp[(segs[0],)]
                if best is None and (segs[0],) in reexp: best=reexp[(segs[0],)]
                if best and best!=m and best!=(): edges[m].add(best)
        for mm in re.finditer(r'super::([A-Za-z_][A-Za-z0-9_]*)', src):
            parent = m[:-1] if not files[m].endswith('mod.rs') else m[:-1]
            cand = parent+(mm.group(1),)
            if cand in mods and cand!=m: edges[m].add(cand)
    # parent module (mod.rs/lib.rs) re-exports are edges parent->child; ignore edges to ancestors' roots
    # Tarjan
    index={};low={};st=[];on=set();res=[];i=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
        for w in edges[v]:
            if w not in index: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1:res.append(comp)
    for v in mods:
        if v not in index: sc(v)
    return res, edges
found = False
for root in sys.argv[1:]:
    res,edges=analyse(root)
    for c in res:
        found = True
        print(root, 'CYCLE:', ' '.join('::'.join(x) or 'lib' for x in sorted(c)))
    if not res: print(root,'no cycles')
if found and not os.environ.get('EDGES'):
    sys.exit(1)
if os.environ.get('EDGES'):
    for root in sys.argv[1:]:
        res,edges=analyse(root)
        for c in res:
            cs=set(c)
            for v in sorted(c):
                print(root,'::'.join(v),'->',sorted('::'.join(w) for w in edges[v] if w in cs))
