/**
 * `@platformatic/kafka`, loaded on first use: importing it costs some 350 ms (it compiles its
 * WebAssembly helpers at load), which users of the kafkajs path and commands that never touch
 * Kafka should not pay.
 */
export type PlatformaticKafka = typeof import('@platformatic/kafka');

let loading: Promise<PlatformaticKafka> | undefined;

export function loadPlatformatic(): Promise<PlatformaticKafka> {
  loading ??= import('@platformatic/kafka');
  return loading;
}
