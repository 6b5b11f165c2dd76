import { startHaproxy, type Balancer } from '../../scripts/bench/balancer.js';

/** HAProxy in front of N backends (scripts/bench/balancer.ts: the configuration and the process), stopped at the test's teardown. */
export type { Balancer };
export { haproxyConfig } from '../../scripts/bench/balancer.js';

export async function startBalancer(t: { teardown(fn: () => unknown): void }, dir: string, backends: string[]): Promise<Balancer> {
  const balancer = await startHaproxy(dir, backends);
  t.teardown(balancer.stop);
  return balancer;
}
