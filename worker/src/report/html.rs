//! `snapshots/<run>/report.html`: one self-contained page (inline CSS and script, no external
//! assets) drawn from the snapshot's [`Summary`], embedded as JSON.
//!
//! The script sets `data-rendered="ok"` on `<html>` once every section is drawn, and
//! `data-error` if anything throws, so a headless browser can tell a page that rendered.

use crate::report::summary::Summary;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d232a;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.1em;margin:1.6em 0 .5em;border-bottom:1px solid #d6dbe1}
.sub{color:#5b6672}.warn{background:#fff4d6;border:1px solid #e8c560;padding:.5em .8em;border-radius:4px}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{background:#f3f5f8;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.3em}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1.2em}
table{border-collapse:collapse;width:100%}td{padding:2px 6px;vertical-align:middle;white-space:nowrap}
td.k{max-width:16em;overflow:hidden;text-overflow:ellipsis}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{height:12px;background:#4a7fd0;border-radius:2px;min-width:1px}.bar.neg{background:#d05a4a}
td.b{width:40%}code{font-size:.92em}
"#;

const SCRIPT: &str = r#"
(function(){
const root=document.documentElement;
window.addEventListener('error',e=>{root.dataset.error=String(e.message||e)});
try{
const s=JSON.parse(document.getElementById('summary').textContent);
const $=id=>document.getElementById(id);
const el=(tag,cls,text)=>{const e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined)e.textContent=text;return e};
const units=['B','KiB','MiB','GiB','TiB','PiB'];
const hb=b=>{let v=Math.abs(b),u=0;while(v>=1024&&u<units.length-1){v/=1024;u++}return (b<0?'-':'')+(u?v.toFixed(1):v)+' '+units[u]};
const num=n=>n.toLocaleString('en-US');
const key=(k,empty)=>k===''?empty:k;
function bars(target,title,rows,value,label,empty){
  const box=el('div');box.appendChild(el('h3',null,title));
  const t=el('table');const max=Math.max(1,...rows.map(r=>Math.abs(value(r))));
  for(const r of rows){const tr=el('tr');const k=el('td','k',key(r.key,empty));k.title=r.key;tr.appendChild(k);
    const b=el('td','b');const bar=el('div','bar'+(value(r)<0?' neg':''));bar.style.width=(100*Math.abs(value(r))/max)+'%';b.appendChild(bar);tr.appendChild(b);
    tr.appendChild(el('td','n',label(r)));t.appendChild(tr)}
  if(!rows.length)box.appendChild(el('p','sub','none'));else box.appendChild(t);target.appendChild(box)}
const t=s.totals;
$('title').textContent='Table of contents: '+s.root;
$('meta').textContent='snapshot '+s.run+' \u00b7 '+s.created+(s.project_level?' \u00b7 project = path level '+s.project_level:'');
if(s.missing_shards.length){const w=el('p','warn','Partial snapshot: shards '+s.missing_shards.join(', ')+' failed'+(s.carried_forward_from?'; their rows are carried from '+s.carried_forward_from:'')+'.');$('notes').appendChild(w)}
if(!s.atime.reliable){$('notes').appendChild(el('p','warn','This file system does not track access times: only '+(100*s.atime.after_mtime).toFixed(2)+' % of files were read after their last write. Age by atime below is not usage.'))}
for(const [label,v] of [['files',num(t.files)],['size',hb(t.bytes)],['directories',num(t.directories)],['symlinks',num(t.symlinks)],['errors',num(t.errors)]]){const c=el('div','card');c.appendChild(el('b',null,v));c.appendChild(el('span','sub',label));$('totals').appendChild(c)}
const size=r=>r.bytes,files=r=>r.files,sl=r=>hb(r.bytes)+' \u00b7 '+num(r.files)+' files',fl=r=>num(r.files)+' files \u00b7 '+hb(r.bytes);
bars($('tops'),'Owners (uid) by size',s.top_owners.by_bytes,size,sl,'(none)');
bars($('tops'),'Projects by size',s.top_projects.by_bytes,size,sl,'(none)');
bars($('tops'),'Extensions by size',s.top_extensions.by_bytes,size,sl,'(no extension)');
bars($('tops'),'Directories by size (files directly inside)',s.top_directories.by_bytes,size,sl,'(root)');
bars($('tops'),'Extensions by files',s.top_extensions.by_files,files,fl,'(no extension)');
bars($('tops'),'Directories by files',s.top_directories.by_files,files,fl,'(root)');
for(const time of ['mtime','atime']){const rows=(s.age[time]||[]).map(b=>({key:b.bucket,files:b.files,bytes:b.bytes}));
  bars($('age'),'Size by '+time+' age'+(time==='atime'&&!s.atime.reliable?' (atime not tracked)':''),rows,size,sl,'')}
if(s.growth){const g=s.growth;
  $('growth').appendChild(el('p',null,'Since '+g.previous_run+': files '+num(g.files_before)+' \u2192 '+num(t.files)+', size '+hb(g.bytes_before)+' \u2192 '+hb(t.bytes)+'; '+num(g.diff.added)+' added, '+num(g.diff.removed)+' removed, '+num(g.diff.changed)+' changed ('+num(g.diff.moved)+' moved).'));
  const grid=el('div','grid');$('growth').appendChild(grid);
  const delta=r=>r.bytes_delta,dl=r=>(r.bytes_delta<0?'':'+')+hb(r.bytes_delta);
  bars(grid,'Growth by owner',g.owners,delta,dl,'(none)');bars(grid,'Growth by project',g.projects,delta,dl,'(none)')}
else $('growth').appendChild(el('p','sub','First snapshot: nothing to compare with.'));
const nights=s.nights||[];
if(nights.length>1){const box=el('div');$('growth').appendChild(box);
  box.appendChild(el('h3',null,'Size over '+nights.length+' nights'));
  const W=640,H=180,P=40,NS='http://www.w3.org/2000/svg',svg=document.createElementNS(NS,'svg');
  svg.setAttribute('viewBox','0 0 '+W+' '+H);svg.setAttribute('width',W);svg.setAttribute('height',H);svg.id='nights-chart';
  const max=Math.max(1,...nights.map(n=>n.bytes)),x=i=>P+i*(W-2*P)/(nights.length-1),y=b=>H-P/2-(H-P)*b/max;
  const line=document.createElementNS(NS,'polyline');line.setAttribute('fill','none');line.setAttribute('stroke','#4a7fd0');line.setAttribute('stroke-width','2');
  line.setAttribute('points',nights.map((n,i)=>x(i)+','+y(n.bytes)).join(' '));svg.appendChild(line);
  nights.forEach((n,i)=>{const c=document.createElementNS(NS,'circle');c.setAttribute('cx',x(i));c.setAttribute('cy',y(n.bytes));c.setAttribute('r','3');c.setAttribute('fill','#4a7fd0');
    const tip=document.createElementNS(NS,'title');tip.textContent=n.run+': '+hb(n.bytes);c.appendChild(tip);svg.appendChild(c)});
  box.appendChild(svg);
  const nt=el('table');nt.id='nights';for(const n of nights){const tr=el('tr');tr.dataset.run=n.run;tr.dataset.bytes=n.bytes;tr.dataset.files=n.files;
    tr.appendChild(el('td','k',n.run));tr.appendChild(el('td',null,n.scan_time.slice(0,19).replace('T',' ')));tr.appendChild(el('td','n',num(n.files)+' files'));tr.appendChild(el('td','n',hb(n.bytes)));nt.appendChild(tr)}
  box.appendChild(nt)}
const d=s.duplicates;
$('dups').appendChild(el('p',null,num(d.tree_groups)+' duplicate directory trees wasting '+hb(d.tree_wasted_bytes)+'; '+num(d.file_groups)+' candidate duplicate file groups wasting '+hb(d.file_wasted_bytes)+' (files and trees of at least '+hb(d.min_size)+', same names and sizes; contents not read).'));
const dt=el('table');for(const g of d.top_trees){const tr=el('tr');tr.appendChild(el('td','n',hb(g.wasted_bytes)));
  tr.appendChild(el('td','n',g.copies+' \u00d7 '+num(g.files)+' files, '+hb(g.bytes)));const c=el('td');c.appendChild(el('code',null,g.dirs.join('  \u00b7  ')));tr.appendChild(c);dt.appendChild(tr)}
if(d.top_trees.length)$('dups').appendChild(dt);
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
         <h2>Top owners, projects, extensions and directories</h2><div id=\"tops\" class=\"grid\"></div>\
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
