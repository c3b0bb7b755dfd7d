"""mmchat: chat about photos with a local vision-language model, by text or voice.

    python app.py --help
"""

from __future__ import annotations

import logging
import sys

from mmchat.config import Config, parse_config


def build_services(config: Config):
    from mmchat.engine.local import create_local_engine
    from mmchat.model_handle import ModelHandle
    from mmchat.turn import Services

    engine = ModelHandle(lambda progress: create_local_engine(config, progress), "model").start()
    return Services(config=config, engine=engine)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mmchat.ui import build_ui, launch

    services = build_services(config)
    launch(build_ui(services), services)


if __name__ == "__main__":
    main(sys.argv[1:])
