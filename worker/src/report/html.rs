//! `snapshots/<run>/report.html`: one self-contained page (inline CSS and script, no external
//! assets) drawn from the snapshot's [`Summary`], embedded as JSON.
//!
//! The script sets `data-rendered="ok"` on `<html>` once every section is drawn, and
//! `data-error` if anything throws, so a headless browser can tell a page that rendered.

use crate::summary::Summary;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d232a;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.1em;margin:1.6em 0 .5em;border-bottom:1px solid #d6dbe1}
h3{font-size:1em;margin:.8em 0 .4em}
.sub{color:#5b6672}.warn{background:#fff4d6;border:1px solid #e8c560;padding:.5em .8em;border-radius:4px}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{background:#f3f5f8;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.3em}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1.2em}
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;vertical-align:middle;white-space:nowrap}
th{text-align:left;font-weight:600;color:#5b6672;border-bottom:1px solid #d6dbe1}
td.k{max-width:16em;overflow:hidden;text-overflow:ellipsis}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.p{max-width:34em;overflow:hidden;text-overflow:ellipsis}
.bar{height:12px;background:#4a7fd0;border-radius:2px;min-width:1px}.bar.neg{background:#d05a4a}
td.b{width:40%}code{font-size:.92em}
svg text{font:11px system-ui,sans-serif;pointer-events:none}
#treemap svg{display:block;width:100%;height:auto}#treemap rect{stroke:#fff;stroke-width:1}
.hist{display:flex;align-items:flex-end;gap:10px;height:170px;border-bottom:1px solid #9aa5b1;padding:0 4px}
.col{flex:1;display:flex;align-items:flex-end;justify-content:center;gap:3px;height:100%;position:relative}
.col i{display:block;width:40%;background:#4a7fd0;border-radius:2px 2px 0 0;min-height:1px}.col i.f{background:#a9c3ea}
.hlab{display:flex;gap:10px;padding:0 4px}.hlab div{flex:1;text-align:center;font-size:12px}
.key i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;background:#4a7fd0}.key i.f{background:#a9c3ea}
.stage-confirmed{color:#1c7c3a;font-weight:600}.stage-sampled{color:#9a6a00}.stage-candidate{color:#5b6672}
"#;

const SCRIPT: &str = r#"
(function(){
const root=document.documentElement;
window.addEventListener('error',e=>{root.dataset.error=String(e.message||e)});
try{
const s=JSON.parse(document.getElementById('summary').textContent);
const $=id=>document.getElementById(id);
const NS='http://www.w3.org/2000/svg';
const el=(tag,cls,text)=>{const e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined)e.textContent=text;return e};
const sv=(tag,attrs,parent)=>{const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);if(parent)parent.appendChild(e);return e};
const units=['B','KiB','MiB','GiB','TiB','PiB'];
const hb=b=>{let v=Math.abs(b),u=0;while(v>=1024&&u<units.length-1){v/=1024;u++}return (b<0?'-':'')+(u?v.toFixed(1):v)+' '+units[u]};
const num=n=>n.toLocaleString('en-US');
const key=(k,empty)=>k===''?empty:k;
const named=names=>k=>names&&names[k]!==undefined?names[k]+' ('+k+')':k;
function bars(target,title,rows,value,label,empty,show){
  const box=el('div');box.appendChild(el('h3',null,title));
  const t=el('table');const max=Math.max(1,...rows.map(r=>Math.abs(value(r))));
  for(const r of rows){const tr=el('tr');tr.dataset.key=r.key;const k=el('td','k',key(show?show(r.key):r.key,empty));k.title=r.key;tr.appendChild(k);
    const b=el('td','b');const bar=el('div','bar'+(value(r)<0?' neg':''));bar.style.width=(100*Math.abs(value(r))/max)+'%';b.appendChild(bar);tr.appendChild(b);
    tr.appendChild(el('td','n',label(r)));t.appendChild(tr)}
  if(!rows.length)box.appendChild(el('p','sub','none'));else box.appendChild(t);target.appendChild(box);return box}
const t=s.totals;
$('title').textContent='Table of contents: '+s.root;
$('meta').textContent='snapshot '+s.run+' \u00b7 '+s.created+(s.project_level?' \u00b7 project = path level '+s.project_level:'');
if(s.missing_shards.length){const w=el('p','warn','Partial snapshot: shards '+s.missing_shards.join(', ')+' failed'+(s.carried_forward_from?'; their rows are carried from '+s.carried_forward_from:'')+'.');$('notes').appendChild(w)}
if(!s.atime.reliable){$('notes').appendChild(el('p','warn','This file system does not track access times: only '+(100*s.atime.after_mtime).toFixed(2)+' % of files were read after their last write. Age by atime below is not usage.'))}
for(const [label,v] of [['files',num(t.files)],['size',hb(t.bytes)],['directories',num(t.directories)],['symlinks',num(t.symlinks)],['errors',num(t.errors)]]){const c=el('div','card');c.appendChild(el('b',null,v));c.appendChild(el('span','sub',label));$('totals').appendChild(c)}

// Treemap: squarified, nested by depth; the space a directory's listed children leave is its
// own files and the directories too small to list.
function squarify(items,x,y,w,h){
  const out=[],rest=items.filter(i=>i.a>0);
  for(const i of items)if(!(i.a>0))out.push([i,x,y,0,0]);
  while(rest.length){
    const side=Math.max(1e-9,Math.min(w,h));let row=[],best=Infinity,sum=0;
    while(rest.length){const c=rest[0],s2=sum+c.a,mx=Math.max(row.length?row[0].a:0,c.a),mn=c.a;
      const worst=Math.max(side*side*mx/(s2*s2),s2*s2/(side*side*mn));if(row.length&&worst>best)break;
      best=worst;row.push(rest.shift());sum=s2}
    if(w>=h){const cw=h>0?sum/h:0;let cy=y;for(const r of row){const rh=cw>0?r.a/cw:0;out.push([r,x,cy,cw,rh]);cy+=rh}x+=cw;w=Math.max(0,w-cw)}
    else{const ch=w>0?sum/w:0;let cx=x;for(const r of row){const rw=ch>0?r.a/ch:0;out.push([r,cx,y,rw,ch]);cx+=rw}y+=ch;h=Math.max(0,h-ch)}}
  return out}
const tree=s.tree||[];
if(tree.length){
  const kids={};for(const n of tree){const i=n.path.lastIndexOf('/'),p=n.depth>1&&i>=0?n.path.slice(0,i):'';(kids[p]=kids[p]||[]).push(n)}
  const W=1060,H=520,svg=sv('svg',{viewBox:'0 0 '+W+' '+H,width:W,height:H,id:'treemap-svg'});
  const hues=[212,140,28,280,350,180,50,100,250,0];let hue=0;
  const draw=(path,bytes,x,y,w,h,depth,h0)=>{
    const children=(kids[path]||[]).slice().sort((a,b)=>b.bytes-a.bytes);if(!children.length)return;
    const head=depth>0&&w>60&&h>34?15:0,pad=depth>0&&w>8&&h-head>8?2:0;const ix=x+pad,iy=y+head+pad,iw=Math.max(0,w-2*pad),ih=Math.max(0,h-head-2*pad);
    const total=Math.max(bytes,children.reduce((a,c)=>a+c.bytes,0));if(total<=0)return;
    const scale=iw*ih/total;const items=children.map(c=>({n:c,a:c.bytes*scale}));
    const rest=(total-children.reduce((a,c)=>a+c.bytes,0))*scale;if(rest>0)items.push({n:null,a:rest});
    items.sort((a,b)=>b.a-a.a);
    for(const [it,rx,ry,rw,rh] of squarify(items,ix,iy,iw,ih)){if(!it.n)continue;const n=it.n;
      const hh=depth<2?hues[(hue++)%hues.length]:h0;
      const r=sv('rect',{x:rx.toFixed(1),y:ry.toFixed(1),width:Math.max(0,rw).toFixed(1),height:Math.max(0,rh).toFixed(1),fill:'hsl('+hh+','+(58-6*depth)+'%,'+(56+9*depth)+'%)'},svg);
      r.dataset.path=n.path;r.dataset.bytes=n.bytes;r.dataset.files=n.files;r.dataset.depth=n.depth;
      sv('title',{},r).textContent=n.path+'\n'+hb(n.bytes)+' \u00b7 '+num(n.files)+' files';
      const name=n.path.slice(n.path.lastIndexOf('/')+1),room=Math.floor((rw-6)/6.2);
      if(rw>40&&rh>14&&room>=4){const label=name+' '+hb(n.bytes);const tx=sv('text',{x:(rx+3).toFixed(1),y:(ry+12).toFixed(1),fill:'#14202c'},svg);
        tx.textContent=label.length>room?label.slice(0,room-1)+'\u2026':label}
      draw(n.path,n.bytes,rx,ry,rw,rh,depth+1,hh)}};
  draw('',t.bytes,0,0,W,H,0,0);
  $('treemap').appendChild(svg);
  $('treemap').appendChild(el('p','sub','The '+tree.length+' biggest directories down to depth '+Math.max(...tree.map(n=>n.depth))+', sized by the bytes of all files below them; blank space is files directly inside a directory and directories too small to list.'))}
else $('treemap').appendChild(el('p','sub','No directories.'));

const size=r=>r.bytes,files=r=>r.files,sl=r=>hb(r.bytes)+' \u00b7 '+num(r.files)+' files',fl=r=>num(r.files)+' files \u00b7 '+hb(r.bytes);
bars($('tops'),'Owners by size',s.top_owners.by_bytes,size,sl,'(none)',named(s.uid_names)).id='top-owners';
bars($('tops'),'Groups by size',(s.top_groups||{by_bytes:[]}).by_bytes,size,sl,'(none)',named(s.gid_names)).id='top-groups';
bars($('tops'),'Projects by size',s.top_projects.by_bytes,size,sl,'(none)');
bars($('tops'),'Extensions by size',s.top_extensions.by_bytes,size,sl,'(no extension)');
bars($('tops'),'Directories by size (files directly inside)',s.top_directories.by_bytes,size,sl,'(root)');
bars($('tops'),'Extensions by files',s.top_extensions.by_files,files,fl,'(no extension)');

// Age histograms: each bucket's share of the bytes (dark) and of the files (light).
for(const time of ['mtime','atime']){const rows=s.age[time]||[];const box=el('div');box.id='age-'+time;$('age').appendChild(box);
  box.appendChild(el('h3',null,'Age by '+time+(time==='atime'&&!s.atime.reliable?' (atime not tracked)':'')));
  const key=el('p','sub key');key.innerHTML='<i></i>share of size<i class="f"></i>share of files';box.appendChild(key);
  const tb=Math.max(1,rows.reduce((a,b)=>a+b.bytes,0)),tf=Math.max(1,rows.reduce((a,b)=>a+b.files,0));
  const hist=el('div','hist'),labels=el('div','hlab');
  for(const b of rows){const col=el('div','col');col.dataset.time=time;col.dataset.bucket=b.bucket;col.dataset.files=b.files;col.dataset.bytes=b.bytes;
    col.title=b.bucket+': '+hb(b.bytes)+' in '+num(b.files)+' files';
    const ib=el('i');ib.style.height=(100*b.bytes/tb)+'%';const iff=el('i','f');iff.style.height=(100*b.files/tf)+'%';col.appendChild(ib);col.appendChild(iff);hist.appendChild(col);
    const l=el('div');l.appendChild(el('b',null,b.bucket));l.appendChild(el('br'));l.appendChild(document.createTextNode(hb(b.bytes)));l.appendChild(el('br'));l.appendChild(el('span','sub',num(b.files)+' files'));labels.appendChild(l)}
  box.appendChild(hist);box.appendChild(labels)}

if(s.growth){const g=s.growth;
  $('growth').appendChild(el('p',null,'Since '+g.previous_run+': files '+num(g.files_before)+' \u2192 '+num(t.files)+', size '+hb(g.bytes_before)+' \u2192 '+hb(t.bytes)+'; '+num(g.diff.added)+' added, '+num(g.diff.removed)+' removed, '+num(g.diff.changed)+' changed ('+num(g.diff.moved)+' moved).'));
  const grid=el('div','grid');$('growth').appendChild(grid);
  const delta=r=>r.bytes_delta,dl=r=>(r.bytes_delta<0?'':'+')+hb(r.bytes_delta);
  bars(grid,'Growth by owner',g.owners,delta,dl,'(none)',named(s.uid_names));bars(grid,'Growth by project',g.projects,delta,dl,'(none)')}
else $('growth').appendChild(el('p','sub','First snapshot: nothing to compare with.'));

// Every kept night: size and files as lines, each point carrying its night's numbers.
const nights=s.nights||[];
function line(target,id,title,value,label,color){
  const box=el('div');target.appendChild(box);box.appendChild(el('h3',null,title));
  const W=520,H=180,P=44,svg=sv('svg',{viewBox:'0 0 '+W+' '+H,width:W,height:H,id:id});
  const max=Math.max(1,...nights.map(value)),x=i=>P+i*(W-2*P)/Math.max(1,nights.length-1),y=v=>H-P/2-(H-P)*v/max;
  sv('line',{x1:P,x2:W-P,y1:y(0),y2:y(0),stroke:'#c5ccd4'},svg);sv('line',{x1:P,x2:W-P,y1:y(max),y2:y(max),stroke:'#eef0f3'},svg);
  sv('text',{x:2,y:y(max)+4,fill:'#5b6672'},svg).textContent=label(max);sv('text',{x:2,y:y(0)+4,fill:'#5b6672'},svg).textContent='0';
  sv('polyline',{fill:'none',stroke:color,'stroke-width':2,points:nights.map((n,i)=>x(i)+','+y(value(n))).join(' ')},svg);
  nights.forEach((n,i)=>{const c=sv('circle',{cx:x(i),cy:y(value(n)),r:3.5,fill:color},svg);c.dataset.run=n.run;c.dataset.value=value(n);
    sv('title',{},c).textContent=n.run+': '+label(value(n))});
  const first=sv('text',{x:P,y:H-4,fill:'#5b6672'},svg);first.textContent=nights[0].scan_time.slice(0,10);
  const last=sv('text',{x:W-P,y:H-4,fill:'#5b6672','text-anchor':'end'},svg);last.textContent=nights[nights.length-1].scan_time.slice(0,10);
  box.appendChild(svg)}
if(nights.length>1){const grid=el('div','grid');$('growth').appendChild(grid);
  line(grid,'nights-chart','Size over '+nights.length+' nights',n=>n.bytes,hb,'#4a7fd0');
  line(grid,'nights-files-chart','Files over '+nights.length+' nights',n=>n.files,num,'#1c7c3a');
  const nt=el('table');nt.id='nights';for(const n of nights){const tr=el('tr');tr.dataset.run=n.run;tr.dataset.bytes=n.bytes;tr.dataset.files=n.files;
    tr.appendChild(el('td','k',n.run));tr.appendChild(el('td',null,n.scan_time.slice(0,19).replace('T',' ')));tr.appendChild(el('td','n',num(n.files)+' files'));tr.appendChild(el('td','n',hb(n.bytes)));nt.appendChild(tr)}
  $('growth').appendChild(nt)}

// Duplicates: file groups by how far their evidence got, the hash step's cost, the groups
// with the most wasted bytes (confirmed first), and duplicate trees.
const d=s.duplicates,dups=$('dups');
const stages=['candidate','sampled','confirmed'].map(st=>(d.stages||[]).find(x=>x.stage===st)||
  ((d.stages||[]).length||st!=='candidate'?{stage:st,groups:0,wasted_bytes:0}:{stage:st,groups:d.file_groups,wasted_bytes:d.file_wasted_bytes}));
dups.appendChild(el('p',null,num(d.file_groups)+' duplicate file groups wasting '+hb(d.file_wasted_bytes)+'; '+num(d.tree_groups)+' duplicate directory trees wasting '+hb(d.tree_wasted_bytes)+' (files and trees of at least '+hb(d.min_size)+').'));
const explain={candidate:'same size and name, or same size and mtime; contents not read',sampled:'and the same sampled blocks',confirmed:'the same SHA-256 of the whole content'};
const st=el('table');st.id='dup-stages';const sh=el('tr');for(const [c,cls] of [['stage'],['groups','n'],['wasted','n'],['evidence']])sh.appendChild(el('th',cls,c));st.appendChild(sh);
for(const x of stages){const tr=el('tr');tr.dataset.stage=x.stage;tr.dataset.groups=x.groups;tr.dataset.wasted=x.wasted_bytes;
  tr.appendChild(el('td','stage-'+x.stage,x.stage));tr.appendChild(el('td','n',num(x.groups)));tr.appendChild(el('td','n',hb(x.wasted_bytes)));tr.appendChild(el('td','sub',explain[x.stage]));st.appendChild(tr)}
dups.appendChild(st);
if(d.hashing){const h=d.hashing;const p=el('p');p.id='dup-hashing';
  p.textContent='Contents read: '+hb(h.bytes_read)+' of a '+hb(h.budget_bytes)+' budget by '+num(h.pods)+' pods in '+Math.round(h.seconds)+' s; '+num(h.files_sampled)+' files sampled, '+num(h.files_hashed)+' hashed in full, '+num(h.cache_hits)+' from the cache. Not read: '+num(h.noatime_refused)+' refused O_NOATIME, '+num(h.unreadable)+' unreadable, '+num(h.changed)+' changed, '+num(h.files_over_budget)+' over budget.';
  dups.appendChild(p)}
else dups.appendChild(el('p','sub','No contents were read: every group is a candidate.'));
if((d.top_files||[]).length){dups.appendChild(el('h3',null,'File groups with the most wasted bytes'));
  const ft=el('table');ft.id='dup-files';const fh=el('tr');for(const [c,cls] of [['stage'],['wasted','n'],['copies','n'],['size','n'],['paths']])fh.appendChild(el('th',cls,c));ft.appendChild(fh);
  for(const g of d.top_files){const tr=el('tr');tr.dataset.stage=g.stage;tr.dataset.wasted=g.wasted_bytes;tr.dataset.copies=g.copies;tr.dataset.size=g.size;
    const sc=el('td','stage-'+g.stage,g.stage);sc.title=g.rule+(g.hash?' '+g.hash:'');tr.appendChild(sc);
    tr.appendChild(el('td','n',hb(g.wasted_bytes)));tr.appendChild(el('td','n',num(g.copies)));tr.appendChild(el('td','n',hb(g.size)));
    const more=g.paths_total-Math.min(3,g.paths.length);const pc=el('td','p');pc.title=g.paths.join('\n');
    pc.appendChild(el('code',null,g.paths.slice(0,3).join('  \u00b7  ')));if(more>0)pc.appendChild(el('span','sub',' +'+num(more)+' more'));tr.appendChild(pc);ft.appendChild(tr)}
  dups.appendChild(ft)}
if(d.top_trees.length){dups.appendChild(el('h3',null,'Duplicate directory trees'));
  const dt=el('table');dt.id='dup-trees';for(const g of d.top_trees){const tr=el('tr');tr.dataset.wasted=g.wasted_bytes;tr.appendChild(el('td','n',hb(g.wasted_bytes)));
    tr.appendChild(el('td','n',g.copies+' \u00d7 '+num(g.files)+' files, '+hb(g.bytes)));const c=el('td');c.appendChild(el('code',null,g.dirs.join('  \u00b7  ')));tr.appendChild(c);dt.appendChild(tr)}
  dups.appendChild(dt)}
root.dataset.rendered='ok';
}catch(e){root.dataset.error=String(e&&e.stack||e)}
})();
"#;

/// The page for `summary`.
pub fn render(summary: &Summary) -> String {
    // `</` inside the JSON would end the script element early.
    let json = serde_json::to_string(summary)
        .expect("serialisable")
        .replace("</", "<\\/");
    let title = escape(&format!("scanjob report {}", summary.run));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <h1 id=\"title\"></h1><p id=\"meta\" class=\"sub\"></p><div id=\"notes\"></div>\
         <h2>Totals</h2><div id=\"totals\" class=\"cards\"></div>\
         <h2>Where the bytes are</h2><div id=\"treemap\"></div>\
         <h2>Top owners, groups, projects, extensions and directories</h2><div id=\"tops\" class=\"grid\"></div>\
         <h2>Age</h2><div id=\"age\" class=\"grid\"></div>\
         <h2>Growth</h2><div id=\"growth\"></div>\
         <h2>Duplicates</h2><div id=\"dups\"></div>\
         <script type=\"application/json\" id=\"summary\">{json}</script>\
         <script>{SCRIPT}</script></body></html>\n"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_cannot_close_the_script() {
        let summary = Summary {
            root: "</script><script>alert(1)</script>".into(),
            ..Default::default()
        };
        let page = render(&summary);
        assert_eq!(page.matches("</script>").count(), 2, "{page}");
    }
}
