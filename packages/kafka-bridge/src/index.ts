export { type ArchiveOptions, kafkaArchiveSink } from './archive.js';
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
export { FAST_CONSUMER, fastKafkaConfig, HEADER } from './options.js';
export { kafkaPublishSink, messageKey, type PublishOptions } from './publish.js';
export { schemaTopicLookup } from './schemas.js';
export {
  defaultStreamFor,
  type KafkaPosition,
  kafkaSubscribeSource,
  type SubscribeOptions,
} from './subscribe.js';
