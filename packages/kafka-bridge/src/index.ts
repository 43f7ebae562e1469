export { kafkaArchiveSink } from './archive.js';
export {
  type AvroType,
  canonicalSchema,
  createDecoder,
  createEncoder,
  type DecoderOptions,
  type Encoder,
  type EncodingOptions,
  rabinFingerprint,
  type SchemaLookup,
  type SchemaRegistryClient,
  schemaFromColumns,
} from './encoding.js';
export { type KafkaBatchMeta, type KafkaRange, kafkaRange } from './meta.js';
export {
  type ArchiveOptions,
  archiveOptionsSchema,
  consumerOptionsSchema,
  HEADER,
  kafkaClientConfig,
  type PublishOptions,
  publishOptionsSchema,
  type ResolvedSubscribeOptions,
  type SubscribeOptions,
  subscribeOptionsSchema,
} from './options.js';
export { kafkaPublishSink, messageKey } from './publish.js';
export { schemaTopicLookup } from './schemas.js';
export {
  defaultStreamFor,
  type KafkaPosition,
  kafkaSubscribeSource,
} from './subscribe.js';
