/** Small schema types shared by config sections. */
import net from 'node:net';
import { z } from 'zod';

/** An address range such as 192.0.2.0/24 or 2001:db8::/32 (a bare address means one host). */
export const cidr = z.string().superRefine((value, ctx) => {
  const [addr, bits, extra] = value.split('/');
  const family = net.isIP(addr ?? '');
  const max = family === 6 ? 128 : 32;
  const ok = family !== 0 && extra === undefined && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max));
  if (!ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'expected an address or CIDR range such as 192.0.2.0/24' });
});

/** A domain name (no trailing dot), lower-cased. */
export const domainName = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i, 'a domain name such as example.com')
  .transform((d) => d.toLowerCase());

export const headerName = z.string().regex(/^[\x21-\x39\x3b-\x7e]+$/, 'a header field name');
