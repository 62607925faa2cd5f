/**
 * What `ceerion setup` changes in an existing Postfix, decided from the current main.cf and
 * master.cf texts (pure; stage.ts has the real `postconf` carry it out).
 *
 * main.cf gets the parameters of the shipped snippets (docker/postfix/milter.cf, policy.cf,
 * lmtp.cf, with the configured addresses), the accounts' pgsql maps and Dovecot SASL. The
 * parameters that are lists an admin may already use for other things (milters, restriction
 * lists) are merged: our entry is added to the admin's list instead of replacing it. Every other
 * parameter of those snippets belongs to the suite and is set to the shipped value.
 * master.cf gets a `submission` service (587) that only takes authenticated clients; the `smtp`
 * service and everything else stay as they are.
 */
import { parseMainCf } from '../postfix/config.ts';

/** One `postconf -e name=value`. `was` is the explicit value it replaces, if any. */
export interface MainCfEdit {
  name: string;
  value: string;
  was?: string;
}

/** `postconf -M service/type=entry` (add a service) or `postconf -P service/type/name=value`. */
export type MasterCfEdit = { kind: 'M'; service: string; entry: string } | { kind: 'P'; service: string; name: string; value: string };

/** Dovecot's SASL socket, relative to Postfix's queue directory (where chrooted smtpd finds it). */
export const SASL_PATH = 'private/auth';
export const SASL_PARAMETERS: Array<[string, string]> = [
  ['smtpd_sasl_type', 'dovecot'],
  ['smtpd_sasl_path', SASL_PATH],
];

/** The parameters to set, in order: each shipped snippet's lines, then the maps, then SASL. */
export function wantedMainCf(snippets: string[]): Array<[string, string]> {
  const all = [...snippets.flatMap((s) => parseMainCf(s)), ...SASL_PARAMETERS];
  // One value per name, first position kept (a later snippet repeating a name wins, like main.cf).
  const byName = new Map<string, string>();
  for (const [k, v] of all) byName.set(k, v);
  return [...byName.entries()];
}

/**
 * Split a Postfix list into its items: commas and blanks separate, `{ … }` groups stay whole
 * (check_policy_service { inet:…, default_action=DUNNO }).
 */
export function listItems(value: string): string[] {
  const items: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of value) {
    if (ch === '{') depth++;
    if (ch === '}') depth = Math.max(0, depth - 1);
    if (depth === 0 && /[\s,]/.test(ch)) {
      if (cur) items.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) items.push(cur);
  return items;
}

const RELAY_CONTROL = /\b(reject|defer)_unauth_destination\b/g;

/**
 * The admin's restriction list with our `check_policy_service ADDR` added right after relay
 * control (before a final `permit`, or at the end), as text: the rest of their list keeps its
 * exact spelling.
 */
function mergeRestriction(current: string, ours: string): string {
  const service = ours.split(/\s+/)[1] ?? '';
  // Already there, possibly in the `{ addr, default_action=… }` form an admin chose.
  const calls = current.match(/check_policy_service\s*(\{[^}]*\}|\S+)/g) ?? [];
  if (calls.some((c) => c.includes(service))) return current;
  const relay = [...current.matchAll(RELAY_CONTROL)].at(-1);
  if (relay?.index !== undefined) {
    const at = relay.index + relay[0].length;
    return `${current.slice(0, at)}, ${ours}${current.slice(at)}`;
  }
  // A final catch-all `permit` would make anything after it unreachable.
  const permit = /,?\s*\bpermit\s*$/.exec(current);
  if (permit) return `${current.slice(0, permit.index)}, ${ours}${current.slice(permit.index)}`;
  return current.trim() ? `${current}, ${ours}` : ours;
}

/** The admin's milter list with ours added (at the end: their milters keep running first). */
function mergeMilters(current: string, ours: string[]): string {
  const list = listItems(current);
  // non_smtpd_milters = $smtpd_milters (Debian's and our form) already includes ours.
  if (list.includes('$smtpd_milters') || list.includes('${smtpd_milters}')) return current;
  const missing = ours.filter((m) => !list.includes(m));
  return missing.length ? [...list, ...missing].join(', ') : current;
}

/**
 * The postconf -e edits that bring `currentMainCf` to what the suite needs. Only names whose
 * value differs are edited, so a configured Postfix gets no edits at all.
 */
export function mainCfEdits(currentMainCf: string, wanted: Array<[string, string]>): { edits: MainCfEdit[]; notes: string[] } {
  const current = new Map(parseMainCf(currentMainCf));
  const want = new Map(wanted);
  const edits: MainCfEdit[] = [];
  const notes: string[] = [];
  for (const [name, value] of wanted) {
    const was = current.get(name);
    let next = value;
    if (was !== undefined) {
      if (name === 'smtpd_milters') next = mergeMilters(was, listItems(value));
      // Ours in non_smtpd_milters is `$smtpd_milters`; merged into a list of the admin's, it is our milter itself.
      else if (name === 'non_smtpd_milters') next = mergeMilters(was, listItems(want.get('smtpd_milters') ?? ''));
      else if (/_restrictions$/.test(name)) {
        next = was;
        for (const r of value.match(/check_policy_service\s+\S+/g) ?? []) next = mergeRestriction(next, r);
      }
    }
    if (next === was) continue;
    edits.push({ name, value: next, ...(was !== undefined ? { was } : {}) });
    if (was !== undefined) notes.push(`main.cf: ${name} was "${was}", now "${next}"`);
  }
  return { edits, notes };
}

/** Whether main.cf gives smtpd a certificate (then submission requires TLS). */
export function hasServerTls(mainCf: string): boolean {
  const p = new Map(parseMainCf(mainCf));
  return ['smtpd_tls_cert_file', 'smtpd_tls_chain_files', 'smtpd_tls_eccert_file'].some((k) => (p.get(k) ?? '') !== '');
}

interface MasterEntry {
  service: string;
  type: string;
  fields: string[];
  /** -o name=value overrides, in order. */
  options: Map<string, string>;
}

/** The active (uncommented) entries of master.cf, with their -o overrides. */
export function parseMasterCf(text: string): MasterEntry[] {
  const entries: MasterEntry[] = [];
  let cur: MasterEntry | undefined;
  const addWords = (words: string[]): void => {
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      const opt = w === '-o' ? words[++i] : w.startsWith('-o') ? w.slice(2) : undefined;
      if (!opt || !cur) continue;
      const eq = opt.indexOf('=');
      if (eq > 0) cur.options.set(opt.slice(0, eq), opt.slice(eq + 1));
    }
  };
  for (const line of text.split('\n')) {
    if (/^\s*(#|$)/.test(line)) continue;
    const words = line.trim().split(/\s+/);
    if (/^\s/.test(line)) {
      addWords(words);
      continue;
    }
    cur = { service: words[0]!, type: words[1] ?? '', fields: words.slice(0, 8), options: new Map() };
    entries.push(cur);
    addWords(words.slice(8));
  }
  return entries;
}

/** The submission service's overrides: authenticated clients only (and TLS first, when there is a certificate). */
export function submissionOptions(tls: boolean): Array<[string, string]> {
  return [
    ['syslog_name', 'postfix/submission'],
    ...(tls
      ? ([
          ['smtpd_tls_security_level', 'encrypt'],
          ['smtpd_tls_auth_only', 'yes'],
        ] as Array<[string, string]>)
      : []),
    ['smtpd_sasl_auth_enable', 'yes'],
    // Checked at RCPT (smtpd_delay_reject): without a login nothing gets through, not even local mail.
    ['smtpd_client_restrictions', 'permit_sasl_authenticated,reject'],
    ['smtpd_relay_restrictions', 'permit_sasl_authenticated,reject'],
  ];
}

/**
 * postconf -M/-P edits for the submission service. An existing `submission inet` entry keeps its
 * fields and other overrides; only the ones above are set. A new one is chrooted like `smtp`.
 */
export function masterCfEdits(currentMasterCf: string, tls: boolean): { edits: MasterCfEdit[]; notes: string[] } {
  const entries = parseMasterCf(currentMasterCf);
  const edits: MasterCfEdit[] = [];
  const notes: string[] = [];
  const service = 'submission/inet';
  let sub = entries.find((e) => e.type === 'inet' && /(^|:)(submission|587)$/.test(e.service));
  if (!sub) {
    const chroot = entries.find((e) => e.service === 'smtp' && e.type === 'inet')?.fields[4] ?? 'y';
    const entry = `submission inet n - ${chroot} - - smtpd`;
    edits.push({ kind: 'M', service, entry });
    sub = { service: 'submission', type: 'inet', fields: entry.split(' '), options: new Map() };
  }
  const spec = `${sub.service}/${sub.type}`;
  for (const [name, value] of submissionOptions(tls)) {
    if (sub.options.get(name) !== value) edits.push({ kind: 'P', service: spec, name, value });
  }
  if (!tls) notes.push('main.cf sets no smtpd_tls_cert_file: submission (587) takes passwords without TLS. Add a certificate and run setup again to require TLS there.');
  return { edits, notes };
}

/** The postconf command lines of the edits (for the report and for stage.ts). */
export function postconfArgs(configDir: string, main: MainCfEdit[], master: MasterCfEdit[]): string[][] {
  const out: string[][] = [];
  // One parameter per run: postconf appends new names in its hash table's order otherwise, and
  // main.cf should read in the snippets' order.
  for (const e of main) out.push(['-c', configDir, '-e', `${e.name}=${e.value}`]);
  for (const m of master) {
    out.push(m.kind === 'M' ? ['-c', configDir, '-M', `${m.service}=${m.entry}`] : ['-c', configDir, '-P', `${m.service}/${m.name}=${m.value}`]);
  }
  return out;
}
