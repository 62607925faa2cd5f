/** htmlToText: visible text, entities, skipped elements, hidden text, links, caps. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { htmlToText, MAX_LINKS } from '../../../classifier/mime/html.ts';

test('visible text: scripts, styles, head and comments dropped; inline tags join, blocks break', () => {
  const r = htmlToText(
    `<!DOCTYPE html><html><head><title>T</title><style>p { color: red }</style><script>if (a < b) x = "</p>"</script></head>
     <body><!-- <p>commented</p> --><p>Fr<b>ee</b>   money</p><div>line<br>two</div><table><tr><td>a</td><td>b</td></tr></table></body></html>`,
    1000,
  );
  assert.equal(r.text, 'Free money\n\nline\ntwo\n\na b');
  assert.equal(r.hiddenTextChars, 0);
  assert.ok(r.tags >= 15);
});

test('entities: named, numeric, hex, windows-1252 numeric range, unknown kept, legacy without ";"', () => {
  const r = htmlToText('&amp;&lt;&gt;&quot;&#65;&#x42;&nbsp;&#146;&euro;&bogus; &copy 2002 &eacute;', 100);
  assert.equal(r.text, '&<>"AB\u00a0’€&bogus; © 2002 é');
});

test('hidden text: display:none, visibility, tiny font, hidden attribute, white on white; not on dark or image backgrounds', () => {
  const cases: Array<[string, number, string]> = [
    ['<div style="display: none">secret</div>shown', 6, 'shown'],
    ['<span style="visibility:hidden">secret</span>shown', 6, 'shown'],
    ['<span style="font-size:0px">secret</span>shown', 6, 'shown'],
    ['<p hidden>secret</p>shown', 6, 'shown'],
    ['<font color="#FFFFFF">secret</font>shown', 6, 'shown'],
    ['<body bgcolor="#000"><font color=black>secret</font></body>', 6, ''],
    ['<table bgcolor=navy><tr><td><font color=white>shown</font></td></tr></table>', 0, 'shown'],
    ['<td background="bg.jpg"><span style="color:#fff">shown</span></td>', 0, 'shown'],
    ['<div style="display:none"><p>a</p><p>b</p></div>shown', 2, 'shown'],
  ];
  for (const [html, hidden, text] of cases) {
    const r = htmlToText(html, 1000);
    assert.equal(r.hiddenTextChars, hidden, html);
    assert.equal(r.text, text, html);
  }
});

test('links: href, src, action, background; entities decoded; relative kept; capped', () => {
  const r = htmlToText(
    `<a href="http://a.example/?x=1&amp;y=2">a</a><img src='http://i.example/p.gif'><form action=/post><area href=#top><td background="http://b.example/bg.jpg">`,
    100,
  );
  assert.deepEqual(r.links, ['http://a.example/?x=1&y=2', 'http://i.example/p.gif', '/post', '#top', 'http://b.example/bg.jpg']);
  const many = htmlToText('<a href="http://x/">x</a>'.repeat(MAX_LINKS + 10), 100);
  assert.equal(many.links.length, MAX_LINKS);
});

test('maxChars caps the text; scanning continues for links and counts', () => {
  const r = htmlToText('<p>' + 'word '.repeat(1000) + '</p><a href="http://late.example/">late</a>', 50);
  assert.equal(r.text.length, 50);
  assert.deepEqual(r.links, ['http://late.example/']);
});

test('malformed HTML: unclosed tags, quotes, comments, lone "<", unclosed <head>', () => {
  assert.equal(htmlToText('a < b and c<d', 100).text, 'a < b and c');
  assert.equal(htmlToText('x <!-- never closed', 100).text, 'x');
  assert.equal(htmlToText('<a href="unclosed>text</a> after', 100).text, 'text after');
  assert.equal(htmlToText('<script>never closed', 100).text, '');
  assert.equal(htmlToText('<head><title>t</title><body>visible', 100).text, 'visible');
  assert.equal(htmlToText('<head>no body at all', 100).text, 'no body at all');
  assert.equal(htmlToText('', 100).text, '');
});
