"""One run, from a config to a trained model: data -> net -> LightningModule -> Trainer ->
fit -> test -> saved run (:mod:`.train`), and what it is made of."""
