-- cai.reward.load(dir): a Hugging Face *ForSequenceClassification reward
-- model as a scorer (see cai.scoring). Failing to load is an error, never a
-- fallback to a heuristic.
return require("cai.scoring").reward
